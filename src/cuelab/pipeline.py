"""Compile the Kubeflow pipeline, run it here with kfp's local runner, or submit it to a cluster.

The pipeline and its components ship in the package (cuelab.kubeflow), so these commands work
from any directory. What the compiled pipeline asks of a cluster (credentials from secrets and
config maps, GPU scheduling, caching, retries) is a ClusterOptions, chosen at compile time.
"""

from __future__ import annotations

import builtins
import contextlib
import io
import json
import os
import re
import sys
import tempfile
import time
import urllib.error
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from .config import load_experiment
from .errors import CuelabError
from .kubeflow.options import ClusterOptions, parse_node_selector

__all__ = ["ClusterOptions", "LocalRun", "LocalStudyRun", "SubmittedRun", "compile_pipeline",
           "load_pipeline", "parse_node_selector", "run_local", "run_study_local", "submit"]


def load_pipeline(options: ClusterOptions | None = None):
    """The pipeline function, its cluster side set by `options` (default: ClusterOptions())."""
    from .kubeflow.pipeline import build_pipeline

    return build_pipeline(options)


def compile_pipeline(out: str | Path, options: ClusterOptions | None = None,
                     study: bool = False) -> Path:
    """Compile the pipeline (`study`: the study pipeline) to the YAML file `out` (its pipeline
    spec, then its Kubernetes platform spec), with `options` for the cluster side; returns
    `out`."""
    from kfp import compiler

    from .kubeflow.pipeline import build_study_pipeline

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".tmp-{out.name}")  # kfp insists on a .yaml suffix
    pipeline = build_study_pipeline(options) if study else load_pipeline(options)
    compiler.Compiler().compile(pipeline, str(tmp))
    tmp.replace(out)
    return out


@dataclass
class LocalRun:
    """A pipeline run by kfp.local: its outputs (dataset, model, report: the artifacts' paths), the
    trace report as a page a browser opens, the full log and the MLflow run of training."""
    outputs: dict[str, Path]
    seconds: float
    page: Path | None = None
    log: Path | None = None
    mlflow_run: str | None = None

    def __str__(self) -> str:
        out = self.outputs
        model = f"{out['model']}" + (f"  (MLflow run {self.mlflow_run})" if self.mlflow_run else "")
        lines = [f"kfp.local ran the pipeline in {self.seconds:.1f} s.",
                 f"  trace report: {self.page or out['report']}",
                 f"  model:        {model}",
                 f"  dataset:      {out['dataset']}"]
        if self.log:
            lines.append(f"  full log:     {self.log}")
        return "\n".join(lines)


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_TASK_DONE = re.compile(r"Task '?(?P<task>[^'\s]+)'? finished with status (?P<status>\w+)")


class _KfpOutput(io.TextIOBase):
    """Stands in for stdout while kfp.local runs (its log and every step's output go there): all of
    it to `log`; to `progress`, one line per finished task; or, with `echo`, everything."""

    def __init__(self, log: TextIO, progress: TextIO | None, echo: TextIO | None) -> None:
        self._log, self._progress, self._echo, self._line = log, progress, echo, ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self._log.write(text)
        if self._echo is not None:
            self._echo.write(text)
        elif self._progress is not None:
            *lines, self._line = (self._line + text).split("\n")
            for line in lines:
                if done := _TASK_DONE.search(_ANSI.sub("", line)):
                    self._progress.write(f"  {done['task']}: {done['status'].lower()}\n")
                    self._progress.flush()
        return len(text)

    def flush(self) -> None:
        self._log.flush()
        for stream in (self._echo, self._progress):
            if stream is not None:
                stream.flush()


def run_local(params: str | Path, workdir: str | Path, dvc_remote: str = "", *,
              render_shards: int = 2, mlflow_tracking_uri: str = "", cache: bool = False,
              verbose: bool = False, progress: bool = True,
              render_cache: str | Path = "", retries: int = 0) -> LocalRun:
    """Run the whole pipeline with kfp.local's SubprocessRunner, in this Python environment, with
    its outputs under `workdir`; with `dvc_remote`, the validated dataset is pushed there.

    kfp.local's own log and every step's output go to <workdir>/kfp-local.log (`verbose`: to
    stdout as well); `progress` writes one line per finished task to stderr. `cache`: reuse the
    outputs of earlier local runs for the steps without side effects (kfp.local's cache, under
    <workdir>/.kfp_cache). `retries`: how often render, train and evaluate are tried again after
    a failure, with the cluster's backoff (30 s, then doubling); none by default: here a failure
    is rarely one that waiting mends, and it is reported at once."""
    load_experiment(params)  # fail here, with the usual message, not inside a component
    if render_shards < 1:
        raise CuelabError(f"--render-shards: got {render_shards}; at least 1")
    run, log, seconds = _kfp_local(load_pipeline(ClusterOptions(retries=retries)), workdir, cache,
                                   verbose, progress,
                                   params_yaml=Path(params).read_text(),
                                   render_shards=render_shards, dvc_remote=dvc_remote,
                                   mlflow_tracking_uri=mlflow_tracking_uri,
                                   render_cache=str(render_cache))
    outputs = {name: Path(artifact.path) for name, artifact in run.outputs.items()}
    page = outputs["report"].parent.parent / "trace_report.html"  # <workdir>/<run>/
    page.write_bytes(outputs["report"].read_bytes())  # a name a browser opens as HTML
    return LocalRun(outputs, seconds, page, log,
                    run.outputs["model"].metadata.get("mlflow_run_id"))


def _kfp_local(pipeline, workdir: str | Path, cache: bool, verbose: bool, progress: bool,
               **arguments):
    """Run a pipeline function with kfp.local's SubprocessRunner under `workdir`: the run, its
    log file and the seconds it took; a failed task is a CuelabError with the log's end."""
    from kfp import local

    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(workdir),
               enable_caching=cache)
    log = workdir / "kfp-local.log"
    start = time.perf_counter()
    with open(log, "w") as log_file, warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # our image's name lacks "python"
        warnings.filterwarnings("ignore", ".*no effect in the current local runner")
        output = _KfpOutput(log_file, sys.stderr if progress else None,
                            sys.stdout if verbose else None)
        print_before = builtins.print
        try:
            with contextlib.redirect_stdout(output):
                run = pipeline(**arguments)
        except RuntimeError as e:  # kfp.local: a task failed
            output.flush()
            tail = _ANSI.sub("", "\n".join(log.read_text().splitlines()[-40:]))
            raise CuelabError(f"kfp.local: {_ANSI.sub('', str(e))}\nthe end of the log "
                              f"({log}):\n{tail}") from None
        finally:
            # kfp.local indents `print` while a task runs and puts back what it found: tasks
            # run side by side (ParallelFor) leave one's indenting print behind, for good
            builtins.print = print_before
    return run, log, time.perf_counter() - start


@dataclass
class LocalStudyRun:
    """A study pipeline run by kfp.local: the study report (a page a browser opens) and the log."""
    page: Path
    seconds: float
    log: Path
    variants: int

    def __str__(self) -> str:
        return (f"kfp.local ran the study pipeline ({self.variants} variants) in "
                f"{self.seconds:.1f} s.\n  study report: {self.page}\n  full log:     {self.log}")


def run_study_local(study: str | Path, workdir: str | Path, *, render_cache: str | Path = "",
                    mlflow_tracking_uri: str = "", cache: bool = False, verbose: bool = False,
                    progress: bool = True, retries: int = 0) -> LocalStudyRun:
    """Run the study pipeline (`build_study_pipeline`) with kfp.local: the study file and its
    base params are read here (and checked, with the usual messages, before anything runs);
    the variants share the render cache `render_cache` (default: <workdir>/render-cache);
    `retries` as in `run_local`."""
    from .kubeflow.pipeline import build_study_pipeline
    from .study import load_study

    s = load_study(study)
    workdir = Path(workdir).resolve()
    run, log, seconds = _kfp_local(
        build_study_pipeline(ClusterOptions(retries=retries)), workdir, cache, verbose, progress,
        study_yaml=Path(study).read_text(), params_yaml=s.base_path.read_text(),
        render_cache=str(Path(render_cache or workdir / "render-cache").resolve()),
        mlflow_tracking_uri=mlflow_tracking_uri)
    html = Path(run.output.path)
    page = html.parent.parent / "study.html"
    page.write_bytes(html.read_bytes())
    return LocalStudyRun(page, seconds, log, len(s.variants()))


@dataclass
class SubmittedRun:
    run_id: str
    experiment: str
    url: str
    run_name: str = ""
    namespace: str | None = None

    def __str__(self) -> str:
        where = f" (namespace {self.namespace})" if self.namespace else ""
        name = f" {self.run_name!r}" if self.run_name else ""
        return (f"submitted run{name} ({self.run_id}) in experiment {self.experiment!r}{where}; "
                f"follow it at\n  {self.url}")


# How to reach a cluster's Kubeflow Pipelines from a workstation, for the error messages.
_PORT_FORWARD = ("`kubectl port-forward -n kubeflow svc/ml-pipeline-ui 8080:80`, then "
                 "--host http://localhost:8080")
# Where submit looks for a token when none is given (KF_PIPELINES_SA_TOKEN_PATH is kfp's own).
TOKEN_ENV = "KF_PIPELINES_TOKEN"
TOKEN_FILE_ENV = "KF_PIPELINES_SA_TOKEN_PATH"


def submit(host: str, params: str | Path, experiment: str | None = None,
           run_name: str | None = None, timeout: float = 10.0, *,
           namespace: str | None = None, token: str | None = None,
           token_file: str | Path | None = None, render_shards: int = 2, dvc_remote: str = "",
           mlflow_tracking_uri: str = "", service_account: str | None = None,
           options: ClusterOptions | None = None, render_cache: str = "") -> SubmittedRun:
    """Compile the pipeline (its cluster side set by `options`) and start a run of it on the
    Kubeflow Pipelines at `host`, every pipeline parameter set: the text of `params` as
    `params_yaml`, `render_shards`, `dvc_remote`, `mlflow_tracking_uri`, `render_cache` (a
    folder the render pods mount, or empty).

    The run goes in the KFP experiment `experiment` (by default the experiment's own name), made
    if missing, in `namespace` (a multi-user Kubeflow's profile namespace), named `run_name` (by
    default the experiment's name and the time), its pods under `service_account` (by default
    the namespace's pipeline runner). Authentication, as kfp.Client supports it: a bearer `token`
    (else $KF_PIPELINES_TOKEN), or `token_file`, a file holding one that is read again at every
    request (else $KF_PIPELINES_SA_TOKEN_PATH), e.g. a projected service-account token.
    Caching is as compiled (options.cache), per step."""
    import kfp
    from kfp.client import ServiceAccountTokenVolumeCredentials
    from kfp_server_api.exceptions import ApiException
    from urllib3.exceptions import HTTPError as TransportError

    exp = load_experiment(params)  # fail here, with the usual message, not in the cluster
    experiment = experiment or exp.name
    run_name = run_name or f"{exp.name} {time.strftime('%Y-%m-%d %H-%M-%S')}"
    if not host.startswith(("http://", "https://")):
        raise CuelabError(f"--host: got {host!r}; the URL of Kubeflow Pipelines, with its scheme "
                          "(http://... or https://...)")
    if render_shards < 1:
        raise CuelabError(f"--render-shards: got {render_shards}; at least 1")
    if token and token_file:
        raise CuelabError("--token and --token-file: give one of them")
    if not token and not token_file:
        token = os.environ.get(TOKEN_ENV) or None
        token_file = None if token else os.environ.get(TOKEN_FILE_ENV) or None
    bearer = token or (_read_token(token_file) if token_file else None)
    host = host.rstrip("/")
    arguments = {"params_yaml": Path(params).read_text(), "render_shards": render_shards,
                 "dvc_remote": dvc_remote, "mlflow_tracking_uri": mlflow_tracking_uri,
                 "render_cache": render_cache}
    with tempfile.TemporaryDirectory() as tmp:
        package = compile_pipeline(Path(tmp) / "cuelab_pipeline.yaml", options)
        health = _check_kfp_api(host, timeout, bearer)
        if health.get("multi_user") and not namespace:
            raise CuelabError(f"--host {host}: this Kubeflow Pipelines is multi-user: give "
                              "--namespace, the namespace of your Kubeflow profile")
        credentials = (ServiceAccountTokenVolumeCredentials(str(token_file)) if token_file
                       else None)
        try:
            with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
                warnings.simplefilter("ignore", FutureWarning)  # "needs a KFP v2 backend"
                client = kfp.Client(host=host, existing_token=token or None,
                                    namespace=namespace or "kubeflow", credentials=credentials)
                run = client.create_run_from_pipeline_package(
                    str(package), arguments=arguments, run_name=run_name,
                    experiment_name=experiment, namespace=namespace,
                    service_account=service_account)
        except ApiException as e:
            if e.status in (401, 403):
                raise CuelabError(f"--host {host}: Kubeflow Pipelines refused the request (HTTP "
                                  f"{e.status}): {_auth_hint(bearer, namespace)}") from None
            raise CuelabError(f"--host {host}: Kubeflow Pipelines did not start the run: "
                              f"{str(e.body or e)[:1000]}") from None
        except (TransportError, TimeoutError, ValueError) as e:
            raise CuelabError(f"--host {host}: Kubeflow Pipelines did not start the run: "
                              f"{str(e)[:1000]}") from None
    return SubmittedRun(run.run_id, experiment, f"{host}/#/runs/details/{run.run_id}", run_name,
                        namespace)


def _read_token(path: str | Path) -> str:
    try:
        token = Path(path).read_text().strip()
    except OSError as e:
        raise CuelabError(f"--token-file {path}: cannot read it ({e.strerror})") from None
    if not token:
        raise CuelabError(f"--token-file {path}: the file is empty; it should hold a token")
    return token


def _auth_hint(bearer: str | None, namespace: str | None) -> str:
    if not bearer:
        return (f"it wants credentials: give a token (--token, or ${TOKEN_ENV}) or a file holding "
                f"one (--token-file, or ${TOKEN_FILE_ENV}), or reach Kubeflow Pipelines through "
                f"a port-forward ({_PORT_FORWARD})")
    return ("the token was refused, or it may not act in "
            f"{'namespace ' + namespace if namespace else 'this namespace'}: check that it is "
            "current and that its account may use Kubeflow Pipelines there")


def _check_kfp_api(host: str, timeout: float, bearer: str | None = None) -> dict:
    """Ask the Kubeflow Pipelines API at `host` for its health (with the bearer token, if any),
    within `timeout` seconds, and return its answer: kfp.Client would retry for half a minute, then
    fail with a traceback."""
    url = f"{host}/apis/v2beta1/healthz"
    not_kfp = ("so it is not the Kubeflow Pipelines API; give the address of the Kubeflow "
               f"Pipelines UI or API (e.g. {_PORT_FORWARD})")
    # directly, like kfp.Client (which ignores $HTTP_PROXY), so both see the same server
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    if bearer:
        request.add_header("Authorization", f"Bearer {bearer}")
    try:
        with opener.open(request, timeout=timeout) as response:
            health = json.loads(response.read())
    except urllib.error.HTTPError as e:
        if e.code in (401, 403):
            raise CuelabError(f"--host {host}: {url} answered HTTP {e.code}: "
                              f"{_auth_hint(bearer, None)}") from None
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
    return health if isinstance(health, dict) else {}
