"""MLflow helpers: the tracking URI, failing fast on an unreachable server, nested runs against
a real server, the DVC hash of a dataset (equal to what `dvc` itself records), the git commit."""

import http.server
import os
import socket
import subprocess
import threading
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import mlflow  # noqa: E402
import pytest  # noqa: E402
import yaml  # noqa: E402
from mlflow import MlflowClient  # noqa: E402

from conftest import BIN, free_port  # noqa: E402
from cuelab import tracking  # noqa: E402
from cuelab.errors import CuelabError  # noqa: E402


def test_tracking_uri_is_a_sqlite_file_at_the_project_root_unless_set(tmp_path, monkeypatch):
    project = tmp_path / "project"
    (project / ".dvc").mkdir(parents=True)
    (project / "reports" / "deep").mkdir(parents=True)
    monkeypatch.chdir(project / "reports" / "deep")  # a step run from inside the project
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("DVC_ROOT", raising=False)
    assert tracking.tracking_uri() == f"sqlite:///{project / 'mlflow.db'}"
    # a queued DVC experiment runs in a temporary copy; DVC_ROOT names the project
    (project / ".dvc" / "tmp" / "exps" / "tmp1234" / ".dvc").mkdir(parents=True)
    monkeypatch.chdir(project / ".dvc" / "tmp" / "exps" / "tmp1234")
    monkeypatch.setenv("DVC_ROOT", str(project))
    assert tracking.tracking_uri() == f"sqlite:///{project / 'mlflow.db'}"
    monkeypatch.delenv("DVC_ROOT")
    monkeypatch.chdir(tmp_path)  # outside any project: here
    assert tracking.tracking_uri() == f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example:5000")
    assert tracking.tracking_uri() == "http://mlflow.example:5000"


def test_connecting_leaves_the_processs_environment_as_it_was(tmp_path, monkeypatch):
    """MLflow exports the URI it is given; a second project's step in the same process must
    still find its own store, not the first's."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("DVC_ROOT", raising=False)
    first, second = tmp_path / "first", tmp_path / "second"
    for project in (first, second):
        (project / ".dvc").mkdir(parents=True)
        monkeypatch.chdir(project)
        assert tracking.connect() == f"sqlite:///{project / 'mlflow.db'}"
        assert mlflow.get_tracking_uri() == f"sqlite:///{project / 'mlflow.db'}"
        assert "MLFLOW_TRACKING_URI" not in os.environ
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{first / 'mlflow.db'}")
    tracking.connect(f"sqlite:///{second / 'mlflow.db'}")
    assert os.environ["MLFLOW_TRACKING_URI"] == f"sqlite:///{first / 'mlflow.db'}"


def test_a_new_experiment_keeps_its_artifacts_beside_the_store(tmp_path, monkeypatch):
    import mlflow

    monkeypatch.chdir(tmp_path.parent)  # not where the store is
    store = tmp_path / "store"
    store.mkdir()
    tracking.connect(f"sqlite:///{store / 'mlflow.db'}")
    found = mlflow.get_experiment(tracking.experiment_id("anchored"))
    assert found.artifact_location == (store / "mlruns").as_uri()
    assert found.tags["mlflow.experimentKind"] == "custom_model_development"


def test_a_refused_connection_fails_at_once_and_says_what_to_do():
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    start = time.monotonic()
    with pytest.raises(CuelabError) as e:
        tracking.connect(uri)
    assert time.monotonic() - start < 5
    assert uri in str(e.value) and "unreachable" in str(e.value)
    assert "MLFLOW_TRACKING_URI" in str(e.value)


@pytest.mark.slow
def test_a_server_that_never_answers_fails_within_30_seconds():
    with socket.socket() as silent:  # accepts connections (the kernel does), never replies
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        uri = f"http://127.0.0.1:{silent.getsockname()[1]}"
        start = time.monotonic()
        with pytest.raises(CuelabError, match="unreachable"):
            tracking.connect(uri)
        assert time.monotonic() - start < 30


def test_a_server_that_is_not_mlflow_is_named(tmp_path):
    handler = lambda *a: http.server.SimpleHTTPRequestHandler(*a, directory=str(tmp_path))  # noqa
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(CuelabError, match="HTTP 404: is it an MLflow server"):
            tracking.connect(f"http://127.0.0.1:{server.server_port}")
    finally:
        server.shutdown()


def test_a_missing_directory_for_the_sqlite_file_is_named(tmp_path):
    with pytest.raises(CuelabError, match="does not exist"):
        tracking.connect(f"sqlite:///{tmp_path / 'nowhere' / 'mlflow.db'}")


def test_nested_runs_and_figures_on_a_real_server(mlflow_server):
    tracking.connect(mlflow_server)
    with tracking.start_run("tracking-test", run_name="parent") as parent:
        pass
    with tracking.start_run(parent_run_id=parent.info.run_id, run_name="child") as child:
        fig, ax = plt.subplots()
        ax.plot([0, 1], [1, 0])
        tracking.log_figure(fig, "curve.png")
    assert not plt.get_fignums()  # closed
    client = MlflowClient(mlflow_server)
    run = client.get_run(child.info.run_id)
    assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert run.info.experiment_id == parent.info.experiment_id
    assert client.get_experiment(run.info.experiment_id).name == "tracking-test"
    assert [a.path for a in client.list_artifacts(child.info.run_id)] == ["curve.png"]
    with pytest.raises(CuelabError, match="starting the run None failed"):
        with tracking.start_run(parent_run_id="0" * 32):
            pass


def test_flatten_gives_dotted_keys_and_string_values():
    flat = tracking.flatten({"seed": 7, "train": {"lr": 0.001, "augment": {"flip": True}},
                             "label": {"levels": ["cube", "cone"]}, "name": "x", "bp": None})
    assert flat == {"seed": "7", "train.lr": "0.001", "train.augment.flip": "true",
                    "label.levels": '["cube", "cone"]', "name": "x", "bp": "null"}


def git(*args, cwd):
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t", "DVC_NO_ANALYTICS": "1",
           "PATH": f"{BIN}:{os.environ['PATH']}"}
    return subprocess.run(args, cwd=cwd, env=env, check=True, capture_output=True,
                          text=True).stdout.strip()


def test_dataset_version_is_the_md5_that_dvc_records(tmp_path):
    data = tmp_path / "images"
    (data / "sub").mkdir(parents=True)
    (data / "index.parquet").write_bytes(os.urandom(1000))
    (data / "train-00000.images.npy").write_bytes(os.urandom(5000))
    (data / "sub" / "x.txt").write_text("line\r\n")  # DVC 3 hashes bytes as they are
    version = tracking.dataset_version(data)
    git("git", "init", "-q", cwd=tmp_path)
    git("dvc", "init", "-q", cwd=tmp_path)
    git("dvc", "add", "-q", "images", cwd=tmp_path)
    recorded = yaml.safe_load((tmp_path / "images.dvc").read_text())["outs"][0]["md5"]
    assert version == recorded and version.endswith(".dir")
    (data / "sub" / "x.txt").write_text("line\n")
    assert tracking.dataset_version(data) != version
    with pytest.raises(CuelabError, match="no dataset there .*run `cuelab sensor` first"):
        tracking.dataset_version(tmp_path / "missing")


def test_git_commit_names_the_commit_and_uncommitted_changes(tmp_path, monkeypatch):
    monkeypatch.delenv("CUELAB_GIT_COMMIT", raising=False)
    assert tracking.git_commit(tmp_path) is None  # not a checkout
    git("git", "init", "-q", cwd=tmp_path)
    (tmp_path / "code.py").write_text("x = 1\n")
    git("git", "add", "code.py", cwd=tmp_path)
    git("git", "commit", "-qm", "first", cwd=tmp_path)
    head = git("git", "rev-parse", "HEAD", cwd=tmp_path)
    assert tracking.git_commit(tmp_path) == head
    (tmp_path / "notes.txt").write_text("untracked files do not count")
    assert tracking.git_commit(tmp_path) == head
    (tmp_path / "code.py").write_text("x = 2\n")
    assert tracking.git_commit(tmp_path) == head + "-dirty"
    monkeypatch.setenv("CUELAB_GIT_COMMIT", "abc123")  # baked into an image
    assert tracking.git_commit(tmp_path) == "abc123"


def test_connect_sets_fast_failing_http_defaults_without_overriding_the_user(monkeypatch,
                                                                              tmp_path):
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "7")
    tracking.connect(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "1"
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "7"
    assert mlflow.get_tracking_uri() == f"sqlite:///{tmp_path / 'mlflow.db'}"


@pytest.mark.reliability(10)
def test_telemetry_is_off_as_soon_as_cuelab_is_imported():
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items()
           if k not in ("MLFLOW_DISABLE_TELEMETRY", "DVC_NO_ANALYTICS")}
    code = ("import os, cuelab; print(os.environ['MLFLOW_DISABLE_TELEMETRY'], "
            "os.environ['DVC_NO_ANALYTICS'])")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert r.stdout.split() == ["true", "1"], r.stderr
    # a user's own setting wins
    r = subprocess.run([sys.executable, "-c", code], env=env | {"DVC_NO_ANALYTICS": "0"},
                       capture_output=True, text=True)
    assert r.stdout.split() == ["true", "0"]


@pytest.mark.reliability(1)
def test_runs_of_a_killed_step_are_marked_killed_at_the_next_start(tmp_path, monkeypatch):
    """A run whose process is gone is closed as KILLED; a live process's run is left alone."""
    import sys

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    tracking.connect()
    code = ("import os; from cuelab import tracking; tracking.connect(); "
            "step = tracking.start_run('orphans', run_name='killed'); run = step.__enter__(); "
            "print(run.info.run_id, flush=True); os.kill(os.getpid(), 9)")
    killed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**os.environ, "MLFLOW_TRACKING_URI": uri})
    assert killed.returncode == -9
    run_id = killed.stdout.split()[0]
    client = MlflowClient(uri)
    assert client.get_run(run_id).info.status == "RUNNING"  # what a kill leaves
    with tracking.start_run("orphans", run_name="alive") as alive:
        assert tracking.close_orphans("orphans") == [run_id]
        assert client.get_run(run_id).info.status == "KILLED"
        assert client.get_run(alive.info.run_id).info.status == "RUNNING"
    assert tracking.close_orphans("orphans") == [] and tracking.close_orphans("nothing") == []


@pytest.mark.reliability(1)
def test_a_new_store_is_made_whole_by_one_process_while_another_waits(tmp_path):
    import sys

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    code = ("from cuelab import tracking; import mlflow; tracking.connect(); "
            "print(len(mlflow.search_experiments()))")
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    both = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for p in both:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0 and out.strip() == "1", err[-2000:]
    assert sorted(f.name for f in tmp_path.iterdir()) == ["mlflow.db"]  # no temporary left


@pytest.mark.reliability(1)
def test_a_damaged_store_is_named_with_the_way_out(tmp_path):
    db = tmp_path / "mlflow.db"
    db.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(CuelabError, match=f"the MLflow store {db} is damaged .*move it away"):
        tracking.connect(f"sqlite:///{db}")
