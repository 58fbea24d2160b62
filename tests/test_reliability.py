"""Hardening against what real use does to a step: kills at any moment, MLflow stores and servers
that break or stall. Real processes, real kills, a real MLflow server; each case ends in a clean
error (non-zero, no traceback, the file or server named) or a correct result, and the project is
usable afterwards.

The rest of the hardening suite lives beside the code it covers, marked `reliability(point)` for
the kind of failure it covers (run them all with `pytest -m reliability`); the last test here
checks that every kind has its tests."""

import http.server
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from conftest import BIN, free_port

pytestmark = pytest.mark.slow

KINDS = {
    1: "MLflow store and server: killed first use, half-migrated store, stalled or dying server, "
       "runs of killed steps",
    2: "evaluate: a model of other data or another store",
    3: "bounded parsing of experiment files",
    4: "bounded experiments: wrong values refused",
    5: "files named by the experiment (mesh:, image:) read at the door",
    6: "broken inputs to the later steps named at the door",
    7: "one writer per output folder",
    8: "leftovers of killed runs removed",
    9: "data faults the statistics cannot see",
    10: "telemetry off before import",
}

TRAIN = {"model": "simple_cnn", "width": 8, "epochs": 2, "batch_size": 8, "lr": 0.01,
         "augment": {"crop": False}, "replicates": 1}


def train_params(tiny_dataset, folder: Path, **train) -> Path:
    exp = yaml.safe_load(tiny_dataset["params"].read_text())
    exp["train"] = TRAIN | train
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(exp))
    return path


def cuelab_train(params: Path, tiny_dataset, folder: Path, uri: str, *extra: str,
                 popen: bool = False):
    cmd = [BIN / "cuelab", "train", "--params", params, "--images", tiny_dataset["images"],
           "--models", folder / "models", "--metrics", folder / "train.json", *extra]
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    if popen:
        return subprocess.Popen(cmd, env=env, cwd=folder, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
    return subprocess.run(cmd, env=env, cwd=folder, capture_output=True, text=True,
                          timeout=600)


def assert_clean_error(r, *named: str) -> None:
    assert r.returncode not in (0, None), r.stderr[-2000:]
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    assert "error:" in r.stderr
    for text in named:
        assert text in r.stderr, r.stderr[-2000:]


def wait_for(condition, process, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, "finished before the moment to kill it came"
        assert time.monotonic() < deadline, "the moment to kill it never came"
        time.sleep(0.01)


# --- 1: the MLflow store and server --------------------------------------------------------------

@pytest.mark.reliability(1)
def test_a_first_training_killed_while_making_the_store_leaves_the_project_usable(
        tiny_dataset, tmp_path):
    db = tmp_path / "mlflow.db"
    uri = f"sqlite:///{db}"
    params = train_params(tiny_dataset, tmp_path)
    run = cuelab_train(params, tiny_dataset, tmp_path, uri, popen=True)
    wait_for(lambda: any(tmp_path.glob(".mlflow.db.*.tmp")), run)  # in MLflow's migrations
    time.sleep(0.05)  # the migrations take about a second from here
    run.kill()
    run.wait()
    if db.exists():  # the migrations beat the kill: nothing was interrupted, try again
        pytest.skip("the store was made before the kill came")
    assert any(tmp_path.glob(".mlflow.db.*.tmp"))  # what the kill left, not a store
    again = cuelab_train(params, tiny_dataset, tmp_path, uri)
    assert again.returncode == 0, again.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.glob("*mlflow.db*")) == ["mlflow.db"]


@pytest.mark.reliability(1)
def test_a_half_migrated_store_is_named_with_the_way_out(tiny_dataset, tmp_path):
    """What a store made without cuelab's care looks like when its first user was killed in
    MLflow's schema migrations (as `mlflow ui` or an older cuelab would leave it)."""
    db = tmp_path / "mlflow.db"
    code = ("from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore; "
            f"SqlAlchemyStore('sqlite:///{db}', '{tmp_path / 'mlruns'}')")
    making = subprocess.Popen([sys.executable, "-c", code])

    def migrating() -> bool:
        try:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
                return bool(conn.execute("select version_num from alembic_version").fetchall())
        except sqlite3.Error:
            return False
    wait_for(migrating, making)
    making.kill()
    making.wait()
    r = cuelab_train(train_params(tiny_dataset, tmp_path), tiny_dataset, tmp_path,
                     f"sqlite:///{db}")
    assert_clean_error(r, str(db), "move it away")
    assert not (tmp_path / "models").exists()


class HalfAlive(http.server.BaseHTTPRequestHandler):
    """Answers its health check; every API call stalls (a server whose database is locked)."""

    def do_GET(self):
        if self.path == "/health":
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"OK")
        else:
            time.sleep(120)

    do_POST = do_GET

    def log_message(self, *args):
        pass


@pytest.mark.reliability(1)
def test_a_server_that_is_healthy_but_stalled_fails_within_15_seconds(tiny_dataset, tmp_path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), HalfAlive)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    uri = f"http://127.0.0.1:{server.server_port}"
    try:
        start = time.monotonic()
        r = cuelab_train(train_params(tiny_dataset, tmp_path), tiny_dataset, tmp_path, uri)
        elapsed = time.monotonic() - start
    finally:
        server.shutdown()
    assert_clean_error(r, uri, "answers its health check but not its API")
    assert elapsed < 15, elapsed


def start_mlflow_server(root: Path, port: int) -> subprocess.Popen:
    import urllib.request

    server = subprocess.Popen(
        [BIN / "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
         "--artifacts-destination", str(root / "artifacts")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).close()
            return server
        except OSError:
            assert server.poll() is None and time.monotonic() < deadline, "no mlflow server"
            time.sleep(0.3)


def stop(server: subprocess.Popen, sig=signal.SIGKILL) -> None:
    os.killpg(server.pid, sig)
    server.wait(timeout=60)


@pytest.mark.reliability(1)
def test_a_server_dying_mid_training_is_a_clean_error_and_training_resumes(tiny_dataset,
                                                                          tmp_path):
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    store = tmp_path / "store"
    store.mkdir()
    server = start_mlflow_server(store, port)
    params = train_params(tiny_dataset, tmp_path, epochs=60)
    try:
        run = cuelab_train(params, tiny_dataset, tmp_path, uri, popen=True)
        wait_for(lambda: (tmp_path / "models" / "replicate-0" / "checkpoint.pt").exists(), run)
        stop(server)
        _, stderr = run.communicate(timeout=120)
        run.stderr = stderr
        assert_clean_error(run, f"MLflow ({uri})", "failed")
        server = start_mlflow_server(store, port)  # back: the killed run goes on
        r = cuelab_train(params, tiny_dataset, tmp_path, uri, "--resume")
        assert r.returncode == 0, r.stderr[-3000:]
        assert "resumed after epoch" in r.stdout
    finally:
        stop(server, signal.SIGTERM)


# --- every kind of failure has its tests ---------------------------------------------------------

def test_every_kind_of_failure_has_a_test():
    marked = {int(n) for path in Path(__file__).parent.glob("test_*.py")
              for n in re.findall(r"@pytest\.mark\.reliability\((\d+)\)", path.read_text())}
    assert marked == set(KINDS), {k: KINDS[k] for k in set(KINDS) - marked}
