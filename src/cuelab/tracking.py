"""MLflow as every step uses it: where the tracking store is, a connection that fails fast, runs
(nested ones for evaluation), figures, and the provenance recorded with a run (the git commit of
the code, the DVC hash of the data).

The embedded default is a SQLite file at the project's root, its artifacts in mlruns/ beside it
(`make ui` browses them), wherever in the project a step runs and also from the temporary
workspace of a queued DVC experiment; `MLFLOW_TRACKING_URI` points every step at a shared server.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

from .errors import CuelabError

DEFAULT_DB = "mlflow.db"
# MLflow's HTTP client retries 7 times with exponential backoff and waits 120 s per request:
# a vanished or stalled server would hold a step for many minutes. With these, a request to a
# server that stopped answering fails in about 20 s (10 s, a 1 s pause, 10 s again); `connect`
# finds a stalled server in API_PROBE_TIMEOUT. The environment still overrides them.
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
                 "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1", "MLFLOW_DISABLE_TELEMETRY": "true"}
API_PROBE_TIMEOUT = 5.0


def project_root() -> Path:
    """The project a step runs for: the repository DVC names (`DVC_ROOT`: a queued or `--temp`
    DVC experiment runs in a temporary copy, and DVC points this at the project it came from),
    else the nearest folder up from here holding .dvc or .git, else the working directory."""
    if os.environ.get("DVC_ROOT"):
        return Path(os.environ["DVC_ROOT"]).resolve()
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / ".dvc").is_dir() or (folder / ".git").exists():
            return folder
    return here


def tracking_uri() -> str:
    """`MLFLOW_TRACKING_URI` if set, else the SQLite file mlflow.db at the project's root (as an
    absolute URI, so that a model's config still finds it from elsewhere)."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{project_root() / DEFAULT_DB}"


def connect(uri: str | None = None, timeout: float = 10.0) -> str:
    """Point MLflow at the tracking store (default: `tracking_uri()`) and check that it answers.
    An unreachable server raises `CuelabError` within about `timeout` seconds, one whose health
    check answers but whose API does not within `timeout` + API_PROBE_TIMEOUT."""
    import mlflow

    for key, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(key, value)
    uri = uri or tracking_uri()
    scheme = urlparse(uri).scheme
    if scheme in ("http", "https"):
        _probe(uri, timeout)
    elif scheme == "sqlite":
        db = Path(uri.removeprefix("sqlite:///"))
        if not db.parent.is_dir():
            raise CuelabError(f"MLFLOW_TRACKING_URI: got {uri!r}; the directory {db.parent} "
                              "does not exist")
        _create_store(db)
        _check_store(db)
    exported = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    # MLflow exports the URI to the process's environment, which is the caller's: put it back,
    # or a later step in this process would find this store instead of its own project's
    if exported is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = exported
    return uri


def _create_store(db: Path) -> None:
    """A new SQLite store is made under a temporary name and renamed into place, one process at
    a time: MLflow's schema migrations take seconds, and a store killed half-way through them
    is broken for good."""
    if db.exists():
        return
    import fcntl

    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    from .atomic import remove_stale

    fd = os.open(db.parent, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # a simultaneous first use waits here
        if db.exists():  # made while we waited
            return
        remove_stale(db.parent, f".{db.name}.")
        tmp = db.with_name(f".{db.name}.{os.getpid()}.tmp")
        tmp.unlink(missing_ok=True)
        with mlflow_errors(f"creating the MLflow store {db}"):
            store = SqlAlchemyStore(f"sqlite:///{tmp}", str(db.parent / "mlruns"))
            store.engine.dispose()
        os.replace(tmp, db)
    finally:
        os.close(fd)


def _check_store(db: Path) -> None:
    """A store that is not a readable SQLite file, or one without MLflow's tables, named."""
    import sqlite3

    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
            tables = {r[0] for r in conn.execute("select name from sqlite_master "
                                                 "where type = 'table'")}
    except sqlite3.DatabaseError as e:
        tables, reason = set(), str(e)
    else:
        reason = "it has no MLflow tables"
    if not {"experiments", "runs", "alembic_version"} <= tables:
        raise CuelabError(f"the MLflow store {db} is damaged ({reason}): move it away (it may "
                          "still hold runs worth keeping) and run again to start a new one, or "
                          "point MLFLOW_TRACKING_URI at another store")
    from mlflow.store.db.utils import _get_latest_schema_revision

    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        found = [r[0] for r in conn.execute("select version_num from alembic_version")]
    if found != [_get_latest_schema_revision()]:
        # half-migrated (made by a process killed in MLflow's migrations), or an older MLflow's
        raise CuelabError(
            f"the MLflow store {db} is at schema revision {', '.join(found) or 'none'}, not "
            f"{_get_latest_schema_revision()} (this MLflow's): if an older MLflow made it, "
            f"upgrade it (`mlflow db upgrade sqlite:///{db}`, back it up first); if a run was "
            "killed while creating it, move it away and run again to start a new one")


def _probe(uri: str, timeout: float) -> None:
    health = uri.rstrip("/") + "/health"
    how_to = ("start it (`mlflow server --host 127.0.0.1 --port 5000`), point "
              "MLFLOW_TRACKING_URI at a running server, or unset MLFLOW_TRACKING_URI to track "
              f"in ./{DEFAULT_DB}")
    try:
        with urllib.request.urlopen(health, timeout=timeout) as response:
            response.read(64)
    except urllib.error.HTTPError as e:
        raise CuelabError(f"the MLflow tracking server {uri} answers GET /health with HTTP "
                          f"{e.code}: is it an MLflow server? {how_to}") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise CuelabError(f"the MLflow tracking server {uri} is unreachable ({reason}): "
                          f"{how_to}") from None
    # a server can be healthy and its API stalled (a locked or lost database): ask it something
    api = uri.rstrip("/") + "/api/2.0/mlflow/experiments/get-by-name?experiment_name=Default"
    try:
        with urllib.request.urlopen(api, timeout=API_PROBE_TIMEOUT) as response:
            response.read(64)
    except urllib.error.HTTPError:
        pass  # it answered (404 without a Default experiment, 401 without credentials...)
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise CuelabError(f"the MLflow tracking server {uri} answers its health check but not "
                          f"its API ({reason} within {API_PROBE_TIMEOUT:g} s): is its database "
                          f"reachable? Restart it, or {how_to.split(', ', 1)[1]}") from None


@contextlib.contextmanager
def mlflow_errors(what: str):
    """Turns MLflow's exceptions into a CuelabError that says what failed, and where."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        yield
    except MlflowException as e:
        raise CuelabError(f"MLflow ({mlflow.get_tracking_uri()}): {what} failed: "
                          f"{_shortened(e.message)}") from None


def _shortened(message: str, limit: int = 600) -> str:
    """MLflow's messages can carry a whole server response or traceback: its first lines."""
    return message if len(message) <= limit else message[:limit] + " ..."


EXPERIMENT_TAGS = {
    # MLflow 3 opens an experiment without a kind on its GenAI overview, empty for us
    "mlflow.experimentKind": "custom_model_development",
    "mlflow.note.content": (
        "cuelab: which cues does the classifier rely on? Each `train` run holds one training "
        "(its settings as parameters, the headline cue metrics of its evaluation), a child run "
        "per replicate (the epochs; the model, registered as cuelab-<experiment>), and the "
        "`evaluate` run nested under it (every probe's metrics, figures, the trace report)."),
}


def experiment_id(name: str) -> str:
    """The MLflow experiment of this name (one per cuelab experiment), created if missing (in a
    SQLite store with its artifacts in mlruns/ beside the store, not below the working
    directory) and tagged so that MLflow shows it as model training, with a description."""
    import mlflow
    from mlflow import MlflowClient

    with mlflow_errors(f"opening the experiment {name!r}"):
        client = MlflowClient()
        found = client.get_experiment_by_name(name)
        if found is None:
            uri = mlflow.get_tracking_uri()
            artifacts = (Path(uri.removeprefix("sqlite:///")).parent / "mlruns").as_uri() \
                if uri.startswith("sqlite:///") else None
            found = client.get_experiment(client.create_experiment(name, artifacts))
        for key, value in EXPERIMENT_TAGS.items():
            if found.tags.get(key) != value:
                client.set_experiment_tag(found.experiment_id, key, value)
        mlflow.set_experiment(experiment_id=found.experiment_id)
        return found.experiment_id


def dvc_experiment() -> dict[str, str]:
    """When a step runs in a DVC experiment: its name and the parameters it changed from its
    baseline commit ({"dvc.exp_name": ..., "dvc.changed": "train.epochs=3, ..."}), for run names
    and tags; else {}."""
    import yaml

    name, baseline = os.environ.get("DVC_EXP_NAME"), os.environ.get("DVC_EXP_BASELINE_REV")
    if not name:
        return {}
    found = {"dvc.exp_name": name, "dvc.baseline_rev": baseline or ""}
    try:
        before = subprocess.run(["git", "show", f"{baseline}:params.yaml"], cwd=project_root(),
                                capture_output=True, text=True, timeout=10, check=True).stdout
        old = flatten(yaml.safe_load(before) or {})
        new = flatten(yaml.safe_load(Path("params.yaml").read_text()) or {})
    except (OSError, subprocess.SubprocessError, yaml.YAMLError, AttributeError):
        return found  # no baseline to compare with: the name alone
    changed = [f"{k}={new.get(k, '(removed)')}" for k in sorted(set(old) | set(new))
               if old.get(k) != new.get(k)]
    found["dvc.changed"] = ", ".join(changed)
    return found


def run_name(step: str, experiment: str) -> str:
    """'train tiny', or in a DVC experiment 'train tiny exp-1a2b3 (train.epochs=3)'."""
    dvc = dvc_experiment()
    name = f"{step} {experiment}"
    if dvc:
        name += f" {dvc['dvc.exp_name']}"
        if dvc.get("dvc.changed"):
            name += f" ({dvc['dvc.changed']})"
    return name if len(name) <= 120 else name[:117] + "..."


def run_exists(run_id: str | None) -> bool:
    """Is there a run of this id in the connected store?"""
    import mlflow
    from mlflow.exceptions import MlflowException

    if not run_id:
        return False
    try:
        mlflow.get_run(run_id)
    except MlflowException:
        return False
    return True


def close_orphans(experiment: str) -> list[str]:
    """Runs of this experiment that a killed cuelab step left RUNNING (its process, on this
    machine, is gone): marked KILLED. Returns their ids. (A resumed training reopens its run.)"""
    import socket

    from mlflow import MlflowClient

    from .atomic import alive

    with mlflow_errors("closing the runs of killed steps"):
        client = MlflowClient()
        found = client.get_experiment_by_name(experiment)
        if found is None:
            return []
        runs = client.search_runs(
            [found.experiment_id], max_results=1000,
            filter_string=f"attributes.status = 'RUNNING' and tags.`cuelab.host` = "
                          f"'{socket.gethostname()}'")
        closed = []
        for run in runs:
            pid = run.data.tags.get("cuelab.pid", "")
            if pid.isdigit() and int(pid) != os.getpid() and not alive(int(pid)):
                client.set_terminated(run.info.run_id, "KILLED")
                closed.append(run.info.run_id)
        return closed


@contextlib.contextmanager
def start_run(experiment: str | None = None, run_id: str | None = None,
              parent_run_id: str | None = None, run_name: str | None = None,
              tags: dict[str, str] | None = None):
    """`mlflow.start_run` on a connected store, as a context manager: a new run in the MLflow
    experiment `experiment`, or `run_id` reopened, or a run nested under `parent_run_id` (in the
    parent's experiment; evaluation nests under the training run named in models/model.json).
    Every MLflow call inside, and the run's end, fail as a `CuelabError` naming the store (a
    server gone mid-training, a full disk), never as a traceback."""
    import socket

    import mlflow

    with mlflow_errors(f"starting the run {run_name or run_id}"):
        exp_id = None
        if parent_run_id is not None:
            exp_id = mlflow.get_run(parent_run_id).info.experiment_id
        elif experiment is not None and run_id is None:
            exp_id = experiment_id(experiment)
        # which process on which machine runs it: a run whose process is gone was killed
        mine = {"cuelab.pid": str(os.getpid()), "cuelab.host": socket.gethostname()}
        run = mlflow.start_run(run_id=run_id, experiment_id=exp_id,
                               parent_run_id=parent_run_id, run_name=run_name,
                               tags=None if run_id else {**dvc_experiment(), **(tags or {}),
                                                         **mine},
                               nested=mlflow.active_run() is not None)
        if run_id:  # reopened (a resumed training): now this process's
            mlflow.set_tags(mine)
    with mlflow_errors(f"logging to the run {run.info.run_name} ({run.info.run_id})"), run:
        yield run


def log_figure(figure, name: str) -> None:
    """Log a matplotlib figure as an artifact of the active run (e.g. "train_samples.png");
    a pyplot figure is closed after."""
    import matplotlib.pyplot as plt
    import mlflow

    try:
        mlflow.log_figure(figure, name)
    finally:
        plt.close(figure)


def flatten(params: dict, prefix: str = "") -> dict[str, str]:
    """Nested settings -> {"train.lr": "0.001", ...}: MLflow parameters are flat strings."""
    flat: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat |= flatten(value, f"{name}.")
        else:
            flat[name] = value if isinstance(value, str) else json.dumps(value)
    return flat


def dataset_version(path: str | Path) -> str:
    """The DVC hash of a directory (or file): the md5 that `dvc.lock` records for it, e.g.
    '9a96f739afbcc4ae31a08e6f1477574b.dir'; computed with DVC's own hashing, no repo needed."""
    import tempfile

    from dvc_data.hashfile.build import build
    from dvc_data.hashfile.db import HashFileDB
    from dvc_objects.fs.local import LocalFileSystem

    path = Path(path).resolve()
    if not path.exists():
        raise CuelabError(f"{path}: no dataset there (the folder is missing): run `cuelab "
                          "sensor` first, or give the dataset's folder")
    fs = LocalFileSystem()
    with tempfile.TemporaryDirectory() as scratch:  # dry run: nothing is written to it
        _, _, obj = build(HashFileDB(fs, scratch), str(path), fs, "md5", dry_run=True)
    return obj.hash_info.value


def git_commit(where: str | Path | None = None) -> str | None:
    """The commit of the code that runs: `CUELAB_GIT_COMMIT` (set it when building an image),
    else `git rev-parse HEAD` where the cuelab package lives (or `where`), with '-dirty' when
    tracked files have uncommitted changes; None outside a git checkout."""
    if os.environ.get("CUELAB_GIT_COMMIT"):
        return os.environ["CUELAB_GIT_COMMIT"]
    cwd = Path(where) if where is not None else Path(__file__).parent

    def git(*args: str) -> str | None:
        try:
            r = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                               timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return r.stdout.strip() if r.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit and git("status", "--porcelain", "--untracked-files=no"):
        commit += "-dirty"
    return commit


# --- the link from an output to its run ---------------------------------------------------------

RUN_FILE = "mlflow-run.json"  # beside a model or an evaluation; .dvcignore keeps it unversioned


def read_run_link(folder: str | Path) -> dict | None:
    """Where the output in `folder` was logged (its mlflow-run.json), or None when the file is
    not there (an output restored with `dvc pull`, or copied without it). Run ids are kept
    apart from the outputs: they differ from run to run while the outputs do not."""
    path = Path(folder) / RUN_FILE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except ValueError as e:
        raise CuelabError(f"{path}: not readable JSON ({e}); delete it to go on without the "
                          "link to its MLflow run") from None
