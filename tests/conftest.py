import os
import shutil
import sys
from pathlib import Path

import pytest
import yaml

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # the venv's bin: cuelab, dvc


def as_a_terminal_starts_it(cmd: list) -> list:
    """`cmd` with Ctrl-C's signal as an interactive shell leaves it for a foreground job
    (default), whatever pytest inherited: a job started with `&` by a script ignores SIGINT, and
    so does everything it starts, so a test of Ctrl-C would test nothing."""
    return [sys.executable, "-c", "import os, signal, sys; signal.signal(signal.SIGINT, "
            "signal.SIG_DFL); os.execv(sys.argv[1], sys.argv[1:])", *map(str, cmd)]


def tiny_experiment(**overrides) -> dict:
    """A small but complete experiment: every kind of row, a few of each."""
    exp = {
        "name": "tiny",
        "seed": 3,
        "label": {"factor": "shape", "levels": ["cube", "sphere", "cone"]},
        "factors": {
            "color": {"levels": ["red", "green", "blue"], "correlation": {"rho": 0.8}},
            "texture": {"levels": ["none", "checker", "dots"],
                        "correlation": {"rho": 0.5, "pairs": {"cube": "dots",
                                                              "sphere": "none",
                                                              "cone": "checker"}}},
            "background": {"levels": ["studio", "sky", "sunset"], "correlation": {"rho": 0.7}},
            "size": {"range": [0.8, 1.2]},
            "light_azimuth": {"range": [0, 90], "distribution": "normal"},
        },
        "splits": {"train": 30, "val": 6, "test": 6},
        "sweeps": [{"factor": "color", "levels": ["red", "green", "blue", "orange"],
                    "base_scenes": 5},
                   {"factor": "iso", "levels": [0, 1600], "base_scenes": 4},
                   {"factor": "size", "points": 3, "base_scenes": 3}],
        "conflicts": [{"factors": ["shape", "color"], "images": 12}],
        "background_protocol": {"base_scenes": 5},
        "train": {"replicates": 2},
    }
    exp.update(overrides)
    return exp


def bare_experiment(**overrides) -> dict:
    """The tiny experiment without probes, for changing its factors freely."""
    exp = tiny_experiment(sweeps=[], conflicts=[])
    del exp["background_protocol"]
    exp.update(overrides)
    return exp


def write_params(path: Path, exp: dict) -> Path:
    path.write_text(yaml.safe_dump(exp, sort_keys=False))
    return path


@pytest.fixture(autouse=True)
def tracking_uri_as_it_was():
    """MLflow's set_tracking_uri exports MLFLOW_TRACKING_URI to the process: whatever a test
    leaves there is undone after it, so that the next test in this worker (two workers, each a
    file at a time) finds its own project's store."""
    before = os.environ.get("MLFLOW_TRACKING_URI")
    yield
    if before is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = before


@pytest.fixture
def tiny_params(tmp_path) -> Path:
    return write_params(tmp_path / "params.yaml", tiny_experiment())


def copy_project(dest: Path) -> Path:
    """The files a stage needs, as a user's checkout would have them."""
    for name in ("dvc.yaml", "params.yaml", "pyproject.toml", ".dvcignore"):
        shutil.copy(ROOT / name, dest / name)
    for name in ("src",):
        shutil.copytree(ROOT / name, dest / name,
                        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    return dest


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> dict[str, Path]:
    """The tiny experiment, really sampled, rendered (32 px, Blender) and acquired, once per
    session: {"params", "scenes", "renders", "images"}. Tests must not modify it; copy first."""
    from cuelab.render import render
    from cuelab.sampling import sample
    from cuelab.sensor import sensor

    root = tmp_path_factory.mktemp("tiny_dataset")
    exp = tiny_experiment(render={"resolution": 32, "samples": 2, "device": "cpu",
                                  "chunk_size": 16})
    paths = {"params": write_params(root / "params.yaml", exp),
             "scenes": root / "scenes.parquet", "renders": root / "renders",
             "images": root / "images"}
    sample(paths["params"], paths["scenes"])
    render(paths["params"], paths["scenes"], paths["renders"], workers=2, progress=False)
    sensor(paths["params"], paths["scenes"], paths["renders"], paths["images"], progress=False)
    return paths


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory) -> str:
    """A real MLflow tracking server on 127.0.0.1 for the session (SQLite store, artifacts
    served by the server itself); its URI. Point a step at it with
    `monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)`."""
    import signal
    import subprocess
    import time
    import urllib.request

    root = tmp_path_factory.mktemp("mlflow_server")
    uri = f"http://127.0.0.1:{free_port()}"
    log = open(root / "server.log", "w")
    server = subprocess.Popen(
        [BIN / "mlflow", "server", "--host", "127.0.0.1", "--port", uri.rsplit(":", 1)[1],
         "--workers", "1", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
         "--artifacts-destination", str(root / "artifacts")],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"})
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(f"{uri}/health", timeout=2).close()
            break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                os.killpg(server.pid, signal.SIGKILL)
                pytest.fail("mlflow server did not start:\n"
                            + (root / "server.log").read_text()[-3000:])
            time.sleep(0.3)
    yield uri
    os.killpg(server.pid, signal.SIGTERM)  # the server and its workers: its own session
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()
    log.close()
