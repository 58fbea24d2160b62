"""The Kubeflow pipeline: the committed YAML matches the code; what it asks of a cluster (resources,
retries, caching, GPU scheduling, credentials) is in the compiled YAML; submit sends every parameter
to a stand-in of the KFP API; and it runs in kfp.local."""

import builtins
import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
import urllib.parse
from pathlib import Path

import pytest
import yaml

from conftest import BIN, ROOT, tiny_experiment, write_params
from cuelab.errors import CuelabError
from cuelab.kubeflow.options import (CONFIG_MAP_KEYS, MLFLOW_SECRET_KEYS, PURE_STEPS, RESOURCES,
                                     SIDE_EFFECTS, STEPS, STORAGE_SECRET_KEYS,
                                     STORAGE_SECRET_MOUNT, STUDY_STEPS)
from cuelab.pipeline import (_ANSI, ClusterOptions, compile_pipeline, parse_node_selector,
                             run_local, submit)
from cuelab.render import render
from cuelab.sampling import sample
from cuelab.scenes import read_scenes
from cuelab.sensor import sensor
from cuelab.tracking import dataset_version


def test_compiled_pipeline_is_in_sync_with_the_code(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    monkeypatch.delenv("CUELAB_IMAGE", raising=False)
    monkeypatch.delenv("CUELAB_TRAIN_IMAGE", raising=False)
    fresh = compile_pipeline(tmp_path / "pipeline.yaml").read_text()
    committed = (ROOT / "pipelines" / "cuelab_pipeline.yaml").read_text()
    assert fresh == committed, "run `cuelab pipeline compile` and commit the YAML"


# --- what the compiled pipeline asks of a cluster, read back from its YAML ------------------------


def compiled(tmp_path, options=None):
    """(pipeline spec, {executor label: Kubernetes platform config}) of the pipeline compiled with
    `options`: the two YAML documents kfp writes."""
    text = compile_pipeline(tmp_path / "pipeline.yaml", options).read_text()
    spec, platform = yaml.safe_load_all(text)
    return spec, platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


def steps(spec) -> dict[str, dict]:
    """step -> {"task": its task spec, "container": its container spec, "executor": its label},
    across the root DAG and the DAGs of the render loop and the push condition."""
    dags = [spec["root"]["dag"]] + [c["dag"] for c in spec["components"].values() if "dag" in c]
    found = {}
    for dag in dags:
        for name, task in dag["tasks"].items():
            component = spec["components"][task["componentRef"]["name"]]
            if "executorLabel" in component:
                label = component["executorLabel"]
                found[name.replace("-", "_")] = {
                    "task": task, "executor": label,
                    "container": spec["deploymentSpec"]["executors"][label]["container"]}
    return found


def test_the_pipeline_takes_these_parameters_and_returns_dataset_model_and_report(tmp_path):
    spec, _ = compiled(tmp_path)
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert set(params) == {"params_yaml", "render_shards", "dvc_remote", "mlflow_tracking_uri",
                           "render_cache"}
    assert "defaultValue" not in params["params_yaml"]
    assert set(spec["root"]["outputDefinitions"]["artifacts"]) == {"dataset", "model", "report"}
    assert set(steps(spec)) == set(STEPS) - set(STUDY_STEPS)


def test_the_study_pipeline_fans_the_variants_out_after_rendering_their_scenes_once(tmp_path):
    spec, _ = yaml.safe_load_all(compile_pipeline(tmp_path / "s.yaml", study=True).read_text())
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert set(params) == {"study_yaml", "params_yaml", "render_cache", "render_shards",
                           "mlflow_tracking_uri"}
    assert "defaultValue" not in params["render_cache"]
    tasks = spec["root"]["dag"]["tasks"]
    loops = {name: t for name, t in tasks.items() if "parameterIterator" in t}
    (loop,) = [n for n, t in loops.items() if "plan-study" in t.get("dependentTasks", [])]
    assert loops[loop]["taskInfo"]["name"] == "variants"
    assert "merge-renders" in loops[loop]["dependentTasks"]  # the study's renders, made first
    assert tasks["study-report"]["dependentTasks"] == [loop]


def test_every_step_has_requests_and_limits_and_render_and_train_have_the_most(tmp_path):
    found = steps(compiled(tmp_path)[0])
    for step, s in found.items():
        r = s["container"]["resources"]
        assert (r["resourceCpuRequest"], r["resourceMemoryRequest"], r["resourceCpuLimit"],
                r["resourceMemoryLimit"]) == RESOURCES[step], step
        assert 0 < r["cpuRequest"] <= r["cpuLimit"] and 0 < r["memoryRequest"] <= r["memoryLimit"]
    assert found["render"]["container"]["resources"]["resourceCpuRequest"] == "4"
    assert found["train"]["container"]["resources"]["resourceMemoryLimit"] == "32G"
    others = [found[s]["container"]["resources"] for s in STEPS
              if s not in ("render", "train", *STUDY_STEPS)]
    for big in ("render", "train"):
        r = found[big]["container"]["resources"]
        for key in ("cpuRequest", "memoryRequest", "memoryLimit"):
            assert r[key] >= max(o[key] for o in others), (big, key)


def test_render_train_evaluate_and_the_push_are_retried_with_backoff(tmp_path):
    found = steps(compiled(tmp_path)[0])
    backoff = {"backoffDuration": "30s", "backoffFactor": 2.0, "backoffMaxDuration": "600s"}
    for step, s in found.items():
        if step in ("render", "train", "evaluate", "version_dataset"):
            assert s["task"]["retryPolicy"] == {"maxRetryCount": 2, **backoff}, step
        else:
            assert "retryPolicy" not in s["task"], step
    found = steps(compiled(tmp_path, ClusterOptions(retries=5))[0])
    assert found["train"]["task"]["retryPolicy"] == {"maxRetryCount": 5, **backoff}
    found = steps(compiled(tmp_path, ClusterOptions(retries=0))[0])
    assert not any("retryPolicy" in s["task"] for s in found.values())


def cached_steps(spec) -> set[str]:
    return {step for step, s in steps(spec).items()
            if s["task"].get("cachingOptions", {}).get("enableCache")}


@pytest.mark.parametrize("policy", ["pure", "all", "none"])
def test_caching_is_off_for_the_steps_with_side_effects_unless_asked(tmp_path, policy):
    cached = cached_steps(compiled(tmp_path, ClusterOptions(cache=policy))[0])
    expected = {"pure": set(PURE_STEPS), "all": set(STEPS), "none": set()}[policy]
    assert cached == expected - set(STUDY_STEPS)
    study = compile_pipeline(tmp_path / "s.yaml", ClusterOptions(cache=policy), study=True)
    assert set(STUDY_STEPS) & expected == set(STUDY_STEPS) & cached_steps(
        yaml.safe_load_all(study.read_text()).__next__())
    if policy == "pure":  # the default
        assert cached_steps(compiled(tmp_path)[0]) == cached
        assert set(SIDE_EFFECTS) == {"train", "evaluate", "version_dataset", "study_report"}
        assert not cached & set(SIDE_EFFECTS)
        assert {"sample", "render", "sensor", "validate", "report"} <= cached


def test_training_gets_a_gpu_and_tolerates_the_gpu_taint(tmp_path):
    spec, executors = compiled(tmp_path)
    found = steps(spec)
    gpu = found["train"]["container"]["resources"]["accelerator"]
    assert (gpu["resourceType"], gpu["resourceCount"]) == ("nvidia.com/gpu", "1")
    train = executors[found["train"]["executor"]]
    assert train["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists",
                                     "effect": "NoSchedule"}]
    assert "nodeSelector" not in train
    for step in set(STEPS) - {"train", *STUDY_STEPS}:
        assert "accelerator" not in found[step]["container"]["resources"], step
        assert "tolerations" not in executors.get(found[step]["executor"], {}), step


def test_gpu_scheduling_is_chosen_at_compile_time(tmp_path):
    options = ClusterOptions(
        accelerator="amd.com/gpu", accelerator_count=2, gpu_steps=("render", "train"),
        gpu_toleration="dedicated",
        gpu_node_selector=parse_node_selector(["cloud.google.com/gke-accelerator=nvidia-l4",
                                               "pool=gpu"]))
    spec, executors = compiled(tmp_path, options)
    found = steps(spec)
    for step in ("render", "train"):
        gpu = found[step]["container"]["resources"]["accelerator"]
        assert (gpu["resourceType"], gpu["resourceCount"]) == ("amd.com/gpu", "2")
        platform = executors[found[step]["executor"]]
        assert platform["tolerations"] == [{"key": "dedicated", "operator": "Exists",
                                            "effect": "NoSchedule"}]
        assert platform["nodeSelector"] == {"labels": {"cloud.google.com/gke-accelerator":
                                                       "nvidia-l4", "pool": "gpu"}}
    assert "accelerator" not in found["evaluate"]["container"]["resources"]
    spec, executors = compiled(tmp_path, ClusterOptions(accelerator=""))  # no GPU anywhere
    assert not any("accelerator" in s["container"]["resources"] for s in steps(spec).values())
    assert not any("tolerations" in e or "nodeSelector" in e for e in executors.values())


def k8s_env(executor: dict) -> dict[str, dict[str, str]]:
    """{"configmap NAME" | "secret NAME": {key: env var}} of one executor; every one optional."""
    env = {}
    for kind, field, key in (("configmap", "configMapAsEnv", "configMapKey"),
                             ("secret", "secretAsEnv", "secretKey")):
        for source in executor.get(field, []):
            assert source["optional"] is True, source
            name = source.get("configMapName") or source.get("secretName")
            env[f"{kind} {name}"] = {k[key]: k["envVar"] for k in source["keyToEnv"]}
    return env


def test_mlflow_and_storage_credentials_come_from_optional_secrets_and_a_config_map(tmp_path):
    spec, executors = compiled(tmp_path)
    found = steps(spec)
    config = {k: k for k in CONFIG_MAP_KEYS}
    mlflow = {k: k for k in MLFLOW_SECRET_KEYS}
    storage = {k: k for k in STORAGE_SECRET_KEYS}
    assert "MLFLOW_TRACKING_URI" in config and "AWS_ENDPOINT_URL" in config
    assert {"MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"} <= set(mlflow)
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= set(storage)
    want = {"train": {"configmap cuelab-config": config, "secret cuelab-mlflow": mlflow,
                      "secret cuelab-storage": storage},
            "version_dataset": {"configmap cuelab-config": config,
                                "secret cuelab-storage": storage}}
    want["evaluate"] = want["train"]
    for step in set(STEPS) - set(STUDY_STEPS):
        executor = executors.get(found[step]["executor"], {})
        assert k8s_env(executor) == want.get(step, {}), step
        volumes = executor.get("secretAsVolume", [])
        if step in want:  # the storage secret as files too (a GCS key)
            assert [(v["secretName"], v["mountPath"], v["optional"]) for v in volumes] == [
                ("cuelab-storage", STORAGE_SECRET_MOUNT, True)]
        else:
            assert not volumes, step


def test_credential_sources_can_be_renamed_or_left_out(tmp_path):
    spec, executors = compiled(tmp_path, ClusterOptions(mlflow_secret="team-mlflow",
                                                        storage_secret="", config_map=""))
    found = steps(spec)
    assert set(k8s_env(executors[found["train"]["executor"]])) == {"secret team-mlflow"}
    assert k8s_env(executors.get(found["version_dataset"]["executor"], {})) == {}
    assert not any("secretAsVolume" in e for e in executors.values())


def test_image_pull_policy_applies_to_every_step(tmp_path):
    spec, executors = compiled(tmp_path, ClusterOptions(image_pull_policy="IfNotPresent"))
    for step, s in steps(spec).items():
        assert executors[s["executor"]]["imagePullPolicy"] == "IfNotPresent", step


@pytest.mark.parametrize("options, message", [
    (dict(gpu_steps=("sample",)), r"--gpu-steps: got 'sample'; .*render, train, evaluate"),
    (dict(cache="sometimes"), r"--cache: got 'sometimes'; one of pure, all, none"),
    (dict(retries=-1), r"--retries: got -1"),
    (dict(accelerator_count=0), r"--gpus: got 0"),
    (dict(image_pull_policy="always"), r"--image-pull-policy: got 'always'"),
])
def test_bad_cluster_options_are_named(options, message):
    with pytest.raises(CuelabError, match=message):
        ClusterOptions(**options)


def test_a_node_selector_is_label_equals_value():
    assert parse_node_selector(["a=b", "c/d=e=f"]) == {"a": "b", "c/d": "e=f"}
    with pytest.raises(CuelabError, match=r"--gpu-node-selector: got 'nvidia'; LABEL=VALUE"):
        parse_node_selector(["nvidia"])


def test_the_pipeline_ships_in_the_package_and_compiles_from_any_directory(tmp_path):
    """No components/ or pipelines/ beside the working directory: the package holds them."""
    import setuptools

    assert {"cuelab.kubeflow", "cuelab.kubeflow.components"} <= set(
        setuptools.find_packages(ROOT / "src"))
    out = tmp_path / "x.yaml"
    code = ("import importlib.util\n"
            "assert importlib.util.find_spec('components') is None\n"
            "from cuelab.pipeline import compile_pipeline\n"
            f"compile_pipeline({str(out)!r})\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                       text=True, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert yaml.safe_load_all(out.read_text()).__next__()["pipelineInfo"]["name"] == "cuelab"


# --- submit, against a stand-in of the Kubeflow Pipelines API -------------------------------------


class KfpStandIn(http.server.ThreadingHTTPServer):
    """The endpoints of the KFP v2beta1 API that kfp.Client uses to submit a run (healthz;
    experiments: list by name, create, get; runs: create), recording every request as
    {"method", "path", "query", "headers" (names in lower case), "body"}. With `token`, a request
    without that bearer token gets HTTP 401."""

    def __init__(self, token: str | None = None, multi_user: bool = False):
        super().__init__(("127.0.0.1", 0), KfpHandler)
        self.token, self.multi_user = token, multi_user
        self.requests: list[dict] = []
        self.experiments: list[dict] = []
        self.runs: list[dict] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}"

    def __enter__(self):
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.shutdown()
        self.server_close()

    def sent(self, method: str, path: str) -> list[dict]:
        return [r for r in self.requests if r["method"] == method and r["path"] == path]


class KfpHandler(http.server.BaseHTTPRequestHandler):
    server: KfpStandIn

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.handle_api("GET")

    def do_POST(self):
        self.handle_api("POST")

    def handle_api(self, method: str):
        url = urllib.parse.urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        query = dict(urllib.parse.parse_qsl(url.query))
        self.server.requests.append({"method": method, "path": url.path, "query": query,
                                     "headers": {k.lower(): v for k, v in self.headers.items()},
                                     "body": body})
        if self.server.token and self.headers.get("Authorization") != f"Bearer {self.server.token}":
            return self.answer(401, {"error": "Unauthorized", "code": 16})
        api = "/apis/v2beta1"
        if method == "GET" and url.path == f"{api}/healthz":
            return self.answer(200, {"multi_user": self.server.multi_user})
        if method == "GET" and url.path == f"{api}/experiments":
            names = [p["stringValue"] for p in json.loads(query.get("filter", "{}"))
                     .get("predicates", []) if p["key"] == "display_name"]
            found = [e for e in self.server.experiments
                     if (not names or e["display_name"] in names)
                     and e.get("namespace") == query.get("namespace")]
            return self.answer(200, {"experiments": found, "total_size": len(found)}
                               if found else {})
        if method == "POST" and url.path == f"{api}/experiments":
            experiment = {**body, "experiment_id": f"exp-{len(self.server.experiments) + 1}",
                          "storage_state": "AVAILABLE"}
            self.server.experiments.append(experiment)
            return self.answer(200, experiment)
        if method == "GET" and url.path.startswith(f"{api}/experiments/"):
            for e in self.server.experiments:
                if url.path.endswith("/" + e["experiment_id"]):
                    return self.answer(200, e)
        if method == "POST" and url.path == f"{api}/runs":
            run = {**body, "run_id": f"run-{len(self.server.runs) + 1}", "state": "PENDING"}
            self.server.runs.append(run)
            return self.answer(200, run)
        return self.answer(404, {"error": "Not Found", "code": 5})

    def answer(self, status: int, payload: dict):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def kfp_client_env(tmp_path, monkeypatch):
    """kfp.Client as on a clean workstation: no KF_PIPELINES_* variables."""
    for name in [n for n in os.environ if n.startswith("KF_PIPELINES_")]:
        monkeypatch.delenv(name)


def test_submit_sends_every_parameter_the_namespace_and_the_token(tmp_path, kfp_client_env):
    params = write_params(tmp_path / "params.yaml", tiny_experiment())
    with KfpStandIn(token="tok-123", multi_user=True) as kfp_api:
        run = submit(kfp_api.url, params, experiment="shapes-vs-color", run_name="rho-0.8",
                     namespace="team-a", token="tok-123", render_shards=3,
                     dvc_remote="s3://datasets/cuelab", mlflow_tracking_uri="http://mlflow:5000",
                     service_account="cuelab-runner")
    assert (run.run_id, run.experiment, run.namespace) == ("run-1", "shapes-vs-color", "team-a")
    assert run.url == f"{kfp_api.url}/#/runs/details/run-1"
    assert "'rho-0.8'" in str(run) and "namespace team-a" in str(run)
    # every request carried the token, the health check first
    assert kfp_api.requests[0]["path"] == "/apis/v2beta1/healthz"
    assert {r["headers"].get("authorization") for r in kfp_api.requests} == {"Bearer tok-123"}
    # the experiment, looked up then made in the namespace
    [lookup] = kfp_api.sent("GET", "/apis/v2beta1/experiments")
    assert lookup["query"]["namespace"] == "team-a"
    assert "shapes-vs-color" in lookup["query"]["filter"]
    [made] = kfp_api.sent("POST", "/apis/v2beta1/experiments")
    assert made["body"] == {"display_name": "shapes-vs-color", "namespace": "team-a"}
    # the run: in that experiment, named, every pipeline parameter set to what was given
    [created] = kfp_api.sent("POST", "/apis/v2beta1/runs")
    body = created["body"]
    assert body["experiment_id"] == "exp-1" and body["display_name"] == "rho-0.8"
    assert body["service_account"] == "cuelab-runner"
    spec = body["pipeline_spec"]["pipeline_spec"]
    sent = body["runtime_config"]["parameters"]
    assert set(sent) == set(spec["root"]["inputDefinitions"]["parameters"])
    assert sent == {"params_yaml": params.read_text(), "render_shards": 3,
                    "dvc_remote": "s3://datasets/cuelab",
                    "mlflow_tracking_uri": "http://mlflow:5000", "render_cache": ""}
    # the compiled pipeline went with its platform spec, caching as compiled (per step)
    assert cached_steps(spec) == set(PURE_STEPS) - set(STUDY_STEPS)
    executors = body["pipeline_spec"]["platform_spec"]["platforms"]["kubernetes"][
        "deploymentSpec"]["executors"]
    assert "secret cuelab-mlflow" in k8s_env(executors["exec-train"])


def test_submit_compiles_with_the_cluster_options_and_reads_a_token_file(tmp_path,
                                                                          kfp_client_env):
    params = write_params(tmp_path / "params.yaml", tiny_experiment())
    token = tmp_path / "token"
    token.write_text("from-a-file\n")
    with KfpStandIn(token="from-a-file") as kfp_api:
        run = submit(kfp_api.url, params, token_file=token,
                     options=ClusterOptions(cache="none", gpu_steps=("render", "train")))
    [created] = kfp_api.sent("POST", "/apis/v2beta1/runs")
    body = created["body"]
    assert {r["headers"].get("authorization") for r in kfp_api.requests} == {"Bearer from-a-file"}
    assert cached_steps(body["pipeline_spec"]["pipeline_spec"]) == set()
    render = steps(body["pipeline_spec"]["pipeline_spec"])["render"]
    assert "accelerator" in render["container"]["resources"]
    # the defaults: the experiment's name, no namespace, the pipeline's own parameter defaults
    assert run.experiment == "tiny" and body["display_name"].startswith("tiny ")
    [made] = kfp_api.sent("POST", "/apis/v2beta1/experiments")
    assert made["body"]["display_name"] == "tiny" and not made["body"].get("namespace")
    assert body["runtime_config"]["parameters"] == {
        "params_yaml": params.read_text(), "render_shards": 2, "dvc_remote": "",
        "mlflow_tracking_uri": "", "render_cache": ""}


def test_submit_takes_the_token_from_the_environment_and_reuses_an_experiment(
        tmp_path, kfp_client_env, monkeypatch):
    params = write_params(tmp_path / "params.yaml", tiny_experiment())
    monkeypatch.setenv("KF_PIPELINES_TOKEN", "env-token")
    with KfpStandIn(token="env-token") as kfp_api:
        kfp_api.experiments.append({"experiment_id": "exp-9", "display_name": "tiny",
                                    "namespace": "team-b"})
        submit(kfp_api.url, params, namespace="team-b")
    assert not kfp_api.sent("POST", "/apis/v2beta1/experiments")
    [created] = kfp_api.sent("POST", "/apis/v2beta1/runs")
    assert created["body"]["experiment_id"] == "exp-9"
    assert created["headers"]["authorization"] == "Bearer env-token"


def test_submit_without_the_credentials_a_server_wants_says_how_to_give_them(tmp_path,
                                                                              kfp_client_env):
    params = write_params(tmp_path / "params.yaml", tiny_experiment())
    with KfpStandIn(token="secret") as kfp_api:
        with pytest.raises(CuelabError, match=r"HTTP 401: it wants credentials: .*--token.*"
                                              r"KF_PIPELINES_TOKEN.*--token-file"):
            submit(kfp_api.url, params)
        with pytest.raises(CuelabError, match=r"HTTP 401: the token was refused"):
            submit(kfp_api.url, params, token="wrong")
    assert not kfp_api.sent("POST", "/apis/v2beta1/runs")


def test_submit_to_a_multi_user_kubeflow_needs_a_namespace(tmp_path, kfp_client_env):
    params = write_params(tmp_path / "params.yaml", tiny_experiment())
    with KfpStandIn(multi_user=True) as kfp_api:
        with pytest.raises(CuelabError, match="multi-user: give --namespace"):
            submit(kfp_api.url, params)
    assert [r["path"] for r in kfp_api.requests] == ["/apis/v2beta1/healthz"]


def test_submit_checks_its_arguments_before_sending_anything(tmp_path, kfp_client_env):
    params = write_params(tmp_path / "params.yaml", tiny_experiment())
    with KfpStandIn() as kfp_api:
        with pytest.raises(CuelabError, match="--token and --token-file: give one"):
            submit(kfp_api.url, params, token="a", token_file=tmp_path / "t")
        with pytest.raises(CuelabError, match=r"--token-file .*missing: cannot read it"):
            submit(kfp_api.url, params, token_file=tmp_path / "missing")
        with pytest.raises(CuelabError, match="--render-shards: got 0; at least 1"):
            submit(kfp_api.url, params, render_shards=0)
    assert kfp_api.requests == []


# --- `make images` --------------------------------------------------------------------------------


def make_images(tmp_path, tools, *args):
    """`make -n images ARGS` with only `tools` (fakes) and sed on PATH: what it would run."""
    fake = tmp_path / "bin"
    fake.mkdir()
    for tool in tools:  # "docker-down": a docker whose daemon does not answer
        name, _, down = tool.partition("-")
        (fake / name).write_text("#!/bin/sh\n" + ('[ "$1" = info ] && exit 1\n' if down else "")
                                 + "exit 0\n")
        (fake / name).chmod(0o755)
    (fake / "sed").symlink_to(shutil.which("sed"))
    r = subprocess.run([shutil.which("make"), "-n", "images", *args], cwd=ROOT,
                       capture_output=True, text=True,
                       env={"PATH": str(fake), "HOME": str(tmp_path)})
    return r, [line for line in r.stdout.replace("\\\n", " ").splitlines() if " build " in line]


@pytest.mark.parametrize("tools", [["docker"], ["podman"], ["buildah"], ["podman", "buildah"],
                                   ["docker-down", "buildah"]])
def test_make_images_builds_both_with_the_tool_at_hand(tmp_path, tools):
    r, builds = make_images(tmp_path, tools, "PIP_INDEX_URL=https://mirror.example/simple",
                            "PIP_CA=ca.pem", "REGISTRY=registry.example/team",
                            "TRAIN_TORCH_INDEX=https://download.pytorch.org/whl/cu126")
    assert r.returncode == 0, r.stderr
    render, train = builds
    for cmd in builds:
        usable = [t for t in tools if not t.endswith("-down")][0]
        assert cmd.split()[:3] == ["DOCKER_BUILDKIT=1", str(tmp_path / "bin" / usable), "build"]
        assert "--build-arg PIP_INDEX_URL=https://mirror.example/simple" in cmd
        assert f"--secret id=pip-ca,src={ROOT / 'ca.pem'}" in cmd
        assert "--build-arg DVC_EXTRAS=s3,gs,azure" in cmd
        assert cmd.rstrip().endswith(" .")
    assert "-f docker/render.Dockerfile -t registry.example/team/cuelab:0.1.0" in render
    assert "-f docker/train.Dockerfile -t registry.example/team/cuelab-train:0.1.0" in train
    assert "TORCH_INDEX" not in render
    assert "--build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu126" in train


@pytest.mark.parametrize("tools", [[], ["docker-down"]])
def test_make_images_without_a_build_tool_says_so(tmp_path, tools):
    r, builds = make_images(tmp_path, tools)
    assert r.returncode != 0 and not builds
    assert "no docker with a running daemon, podman or buildah on PATH" in r.stderr


def test_pipeline_runs_in_kfp_local_and_matches_the_steps(tmp_path):
    """`cuelab pipeline run-local` as a user types it, from another directory: a short summary on
    stdout, one line per finished task on stderr, and outputs equal to the steps called
    directly."""
    params = write_params(tmp_path / "params.yaml", tiny_experiment(
        render={"resolution": 32, "samples": 2, "device": "cpu", "chunk_size": 16},
        train={"epochs": 2, "width": 8, "device": "cpu", "replicates": 2},
        evaluate={"bootstrap": 200, "attribution_images": 4}))
    kfp = tmp_path / "kfp"
    # two render shards in a ParallelFor, merged; the validated dataset pushed to a DVC remote;
    # the pipeline as compiled for a cluster (kfp.local ignores the platform spec: secrets...)
    r = subprocess.run([BIN / "cuelab", "pipeline", "run-local", "--params", str(params),
                        "--workdir", str(kfp), "--dvc-remote", str(tmp_path / "remote")],
                       cwd=tmp_path, capture_output=True, text=True,
                       env={**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}",
                            "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"})
    assert r.returncode == 0, r.stderr[-2000:]
    # a summary that says where things are; kfp.local's own output is in the log
    summary = dict(map(str.strip, line.split(": ", 1)) for line in r.stdout.splitlines()[1:])
    assert r.stdout.startswith("kfp.local ran the pipeline") and len(summary) == 4, r.stdout
    images, log, page = (Path(summary[k]) for k in ("dataset", "full log", "trace report"))
    model, mlflow_run = summary["model"].split("  (MLflow run ")
    assert Path(model) == next(kfp.glob("*/train/model")) and images.is_relative_to(kfp)
    assert mlflow_run.rstrip(")")
    assert page.read_bytes() == next(kfp.glob("*/report/html")).read_bytes()
    assert "Task 'train' finished with status" in _ANSI.sub("", log.read_text())
    assert "  train: success\n" in r.stderr and len(r.stderr.splitlines()) < 30, r.stderr
    shards = list(kfp.glob("*/for-loop-*/render/renders"))
    assert len(shards) == 2 and all(any(s.iterdir()) for s in shards)
    merged = next(kfp.glob("*/merge-renders/renders"))
    # the same steps, called directly
    sample(params, tmp_path / "scenes.parquet")
    render(params, tmp_path / "scenes.parquet", tmp_path / "direct", progress=False)
    direct = sorted(f.name for f in (tmp_path / "direct").iterdir())
    assert sorted(f.name for f in merged.iterdir()) == direct
    for name in direct:
        assert (merged / name).read_bytes() == (tmp_path / "direct" / name).read_bytes()
    sensor(params, tmp_path / "scenes.parquet", tmp_path / "direct", tmp_path / "images",
           progress=False)
    for f in (tmp_path / "images").iterdir():
        assert (images / f.name).read_bytes() == f.read_bytes(), f.name
    # the gate ran on them and passed, with its Data Docs as the dashboard's HTML
    gate = json.loads(next(kfp.glob("*/validate/validation.json")).read_text())
    assert gate["passed"] and gate["images"] == len(read_scenes(tmp_path / "scenes.parquet"))
    assert "Great Expectations" in next(kfp.glob("*/validate/docs")).read_text()
    pointer = yaml.safe_load(next(kfp.glob("*/version-dataset/pointer")).read_text())
    assert pointer["outs"][0]["md5"] == dataset_version(images)
    assert any((tmp_path / "remote").rglob("*"))
    # then the model, its metrics and the dashboard's pages
    configs = sorted(kfp.glob("*/train/model/replicate-*/model.json"))
    assert [json.loads(c.read_text())["num_classes"] for c in configs] == [3, 3]
    assert next(kfp.glob("*/evaluate/evaluation/results.json")).is_file()
    assert "What does the model rely on?" in page.read_text() and "https://" not in page.read_text()


@pytest.mark.slow
def test_run_local_keeps_kfp_output_in_a_log_and_reports_a_failure_briefly(tmp_path, capsys):
    """A real failure: training cannot reach its MLflow server. kfp.local's chatter goes to the
    log; stderr gets one line per finished task; the failure is a CuelabError with the end of
    the log, which holds the step's own message."""
    from conftest import free_port

    params = write_params(tmp_path / "params.yaml", tiny_experiment(
        splits={"train": 3, "val": 1, "test": 1}, sweeps=[], conflicts=[],
        render={"resolution": 32, "samples": 1, "device": "cpu"}))
    print_before = builtins.print
    with pytest.raises(CuelabError) as failed:
        run_local(params, tmp_path / "kfp",
                  mlflow_tracking_uri=f"http://127.0.0.1:{free_port()}")
    assert builtins.print is print_before  # kfp.local's indenting print is not left behind
    message = str(failed.value)
    assert message.startswith("kfp.local: ") and "'train'" in message, message
    assert f"({tmp_path / 'kfp' / 'kfp-local.log'})" in message
    assert "unreachable" in message and "\x1b" not in message
    log = (tmp_path / "kfp" / "kfp-local.log").read_text()
    assert "is unreachable" in log
    assert "Retrying in" not in log  # a local run retries only when asked (--retries)
    err = capsys.readouterr().err
    assert "  sample: success\n" in err and "  train: failure\n" in err


def test_run_local_refuses_a_negative_retry_count_by_its_flag(tmp_path):
    params = write_params(tmp_path / "params.yaml", tiny_experiment())
    r = subprocess.run([BIN / "cuelab", "pipeline", "run-local", "--params", str(params),
                        "--workdir", str(tmp_path / "kfp"), "--retries", "-1"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.strip() == \
        "cuelab pipeline: error: --retries: got -1; 0 or more", r.stderr
    assert not (tmp_path / "kfp").exists()


def test_cli_submit_passes_every_option(tmp_path):
    """`cuelab pipeline submit` with every flag, as a user types it, against the stand-in."""
    params = write_params(tmp_path / "params.yaml", tiny_experiment())
    env = {k: v for k, v in os.environ.items() if not k.startswith("KF_PIPELINES_")}
    with KfpStandIn(token="tok-9", multi_user=True) as kfp_api:
        r = subprocess.run(
            [BIN / "cuelab", "pipeline", "submit", "--params", params, "--host", kfp_api.url,
             "--experiment", "cli-exp", "--run-name", "cli-run", "--namespace", "team-b",
             "--token", "tok-9", "--service-account", "runner", "--render-shards", "4",
             "--dvc-remote", "gs://bucket/cuelab", "--mlflow-tracking-uri", "http://ml:5000",
             "--render-cache", "/mnt/renders", "--cache", "none", "--retries", "3", "--gpus", "2",
             "--gpu-node-selector", "pool=gpu", "--image-pull-policy", "Always"],
            capture_output=True, text=True, env={**env, "HOME": str(tmp_path)}, timeout=300)
        assert r.returncode == 0, r.stderr[-3000:]
        [created] = kfp_api.sent("POST", "/apis/v2beta1/runs")
    body = created["body"]
    assert body["display_name"] == "cli-run" and body["service_account"] == "runner"
    assert body["runtime_config"]["parameters"] == {
        "params_yaml": params.read_text(), "render_shards": 4,
        "dvc_remote": "gs://bucket/cuelab", "mlflow_tracking_uri": "http://ml:5000",
        "render_cache": "/mnt/renders"}
    spec = body["pipeline_spec"]["pipeline_spec"]
    assert cached_steps(spec) == set()  # --cache none
    executors = body["pipeline_spec"]["platform_spec"]["platforms"]["kubernetes"][
        "deploymentSpec"]["executors"]
    assert executors["exec-train"]["nodeSelector"]["labels"] == {"pool": "gpu"}
    assert "cli-run" in r.stdout and "team-b" in r.stdout
