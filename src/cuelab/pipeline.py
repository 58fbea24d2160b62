"""Compile the Kubeflow pipeline, run it here with kfp's local runner, or submit it to a cluster.

The pipeline and its components live at the project's top level (pipelines/, components/), beside
dvc.yaml; like `dvc`, these commands run from the project directory.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
import urllib.error
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path

from .config import load_experiment
from .errors import CuelabError


def _project_root() -> Path:
    for d in [Path.cwd(), *Path.cwd().parents]:
        if (d / "pipelines" / "cuelab_pipeline.py").is_file():
            return d
    raise CuelabError(f"no pipelines/cuelab_pipeline.py in {Path.cwd()} or above: run "
                      "`cuelab pipeline` from the cuelab project directory")


def load_pipeline():
    root = str(_project_root())
    if root not in sys.path:
        sys.path.insert(0, root)
    from pipelines.cuelab_pipeline import cuelab_pipeline

    return cuelab_pipeline


def compile_pipeline(out: str | Path) -> Path:
    from kfp import compiler

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".tmp-{out.name}")  # kfp insists on a .yaml suffix
    compiler.Compiler().compile(load_pipeline(), str(tmp))
    tmp.replace(out)
    return out


@dataclass
class LocalRun:
    outputs: dict[str, Path]
    seconds: float

    def __str__(self) -> str:
        lines = [f"kfp.local ran the pipeline in {self.seconds:.1f} s; its outputs:"]
        lines += [f"  {name}: {path}" for name, path in self.outputs.items()]
        return "\n".join(lines)


def run_local(params: str | Path, workdir: str | Path, dvc_remote: str = "") -> LocalRun:
    """Run the whole pipeline with kfp.local's SubprocessRunner, in this Python environment;
    with `dvc_remote`, the validated dataset is pushed there."""
    from kfp import local

    load_experiment(params)  # fail here, with the usual message, not inside a component
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(workdir))
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # our image's name lacks "python"
        warnings.filterwarnings("ignore", ".*no effect in the current local runner")
        run = load_pipeline()(params_yaml=Path(params).read_text(), dvc_remote=dvc_remote)
    outputs = {name: Path(artifact.path) for name, artifact in run.outputs.items()}
    return LocalRun(outputs, time.perf_counter() - start)



@dataclass
class SubmittedRun:
    run_id: str
    experiment: str
    url: str

    def __str__(self) -> str:
        return (f"submitted run {self.run_id} in experiment {self.experiment!r}; follow it at\n"
                f"  {self.url}")


# How to reach a cluster's Kubeflow Pipelines from a workstation, for the error messages.
_PORT_FORWARD = ("`kubectl port-forward -n kubeflow svc/ml-pipeline-ui 8080:80`, then "
                 "--host http://localhost:8080")


def submit(host: str, params: str | Path, experiment: str | None = None,
           run_name: str | None = None, timeout: float = 10.0) -> SubmittedRun:
    """Compile the pipeline and start a run of it on the Kubeflow Pipelines at `host`, with the
    text of `params` as its `params_yaml`. The run goes in the KFP experiment `experiment`,
    by default the experiment's own name."""
    import kfp
    from kfp_server_api.exceptions import ApiException
    from urllib3.exceptions import HTTPError as TransportError

    exp = load_experiment(params)  # fail here, with the usual message, not in the cluster
    experiment = experiment or exp.name
    if not host.startswith(("http://", "https://")):
        raise CuelabError(f"--host: got {host!r}; the URL of Kubeflow Pipelines, with its scheme "
                          "(http://... or https://...)")
    host = host.rstrip("/")
    with tempfile.TemporaryDirectory() as tmp:
        package = compile_pipeline(Path(tmp) / "cuelab_pipeline.yaml")
        _check_kfp_api(host, timeout)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # "needs a KFP v2 backend"
                run = kfp.Client(host=host).create_run_from_pipeline_package(
                    str(package), arguments={"params_yaml": Path(params).read_text()},
                    run_name=run_name, experiment_name=experiment)
        except (ApiException, TransportError, TimeoutError) as e:
            detail = getattr(e, "body", None) or e
            raise CuelabError(f"--host {host}: Kubeflow Pipelines did not start the run: "
                              f"{str(detail)[:1000]}") from None
    return SubmittedRun(run.run_id, experiment, f"{host}/#/runs/details/{run.run_id}")


def _check_kfp_api(host: str, timeout: float) -> None:
    """Ask the Kubeflow Pipelines API at `host` for its health, within `timeout` seconds:
    kfp.Client would retry for half a minute, then fail with a traceback."""
    url = f"{host}/apis/v2beta1/healthz"
    not_kfp = ("so it is not the Kubeflow Pipelines API; give the address of the Kubeflow "
               f"Pipelines UI or API (e.g. {_PORT_FORWARD})")
    # directly, like kfp.Client (which ignores $HTTP_PROXY), so both see the same server
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as response:
            json.loads(response.read())
    except urllib.error.HTTPError as e:
        if e.code in (401, 403):
            raise CuelabError(f"--host {host}: {url} asks for credentials (HTTP {e.code}), which "
                              "submit does not send; reach Kubeflow Pipelines through a "
                              f"port-forward instead ({_PORT_FORWARD})") from None
        raise CuelabError(f"--host {host}: {url} answered HTTP {e.code} {e.reason}, "
                          f"{not_kfp}") from None
    except ValueError:
        raise CuelabError(f"--host {host}: {url} did not answer JSON (a login page?), "
                          f"{not_kfp}") from None
    except OSError as e:  # refused, unknown host, timed out
        reason = getattr(e, "reason", None) or e
        raise CuelabError(f"--host {host}: cannot reach Kubeflow Pipelines ({reason}); check the "
                          "URL (scheme, host, port), that the cluster is up and, if you reach it "
                          f"through a port-forward, that it is running ({_PORT_FORWARD})") from None
