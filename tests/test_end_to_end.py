"""The whole experiment as a user runs it: `dvc repro` of every stage in a fresh git repository,
every output checked; evaluation-only changes rerun only the evaluation; DVC shows the metrics and
plots and round-trips the data through its remote."""

import json

import pandas as pd
import pytest
import yaml

from conftest import copy_project, tiny_experiment
from cuelab.data import read_index
from test_dvc import ran, sh

pytestmark = pytest.mark.slow

STAGES = ("sample", "render", "sensor", "validate", "train", "evaluate", "report")


def small_experiment() -> dict:
    return tiny_experiment(
        render={"resolution": 32, "samples": 2, "device": "cpu", "chunk_size": 32},
        train={"epochs": 2, "width": 8, "batch_size": 16, "device": "cpu", "replicates": 2},
        evaluate={"bootstrap": 200, "attribution_images": 4, "occlusion_patch": 8})


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e") / "project"
    root.mkdir()
    copy_project(root)
    (root / "params.yaml").write_text(yaml.safe_dump(small_experiment(), sort_keys=False))
    sh("git", "init", "-q", cwd=root)
    sh("dvc", "init", "-q", cwd=root)
    sh("dvc", "remote", "add", "-d", "local", str(root.parent / "remote"), cwd=root)
    sh("git", "add", "-A", cwd=root)
    sh("git", "commit", "-qm", "init", cwd=root)
    out = sh("dvc", "repro", cwd=root)
    return root, out


def test_every_stage_runs_and_writes_its_outputs(project):
    root, out = project
    assert ran(out) == set(STAGES)
    scenes = pd.read_parquet(root / "data" / "scenes.parquet")
    assert read_index(root / "data" / "images").image_id.tolist() == scenes.image_id.tolist()
    validation = json.loads((root / "metrics" / "validation.json").read_text())
    assert validation["passed"] and validation["images"] == len(scenes)
    assert (root / "reports" / "validation" / "index.html").is_file()
    for r in range(2):
        model = json.loads((root / "models" / f"replicate-{r}" / "model.json").read_text())
        assert model["num_classes"] == 3 and model["replicate"] == r
        assert (root / "models" / f"replicate-{r}" / "model.pt").is_file()
    train = json.loads((root / "metrics" / "train.json").read_text())
    assert train["replicates"] == 2 and 0 <= train["best_val_accuracy_mean"] <= 1
    assert (root / "mlflow.db").is_file()
    evaluation = json.loads((root / "metrics" / "evaluate.json").read_text())
    assert evaluation  # headline numbers for dvc metrics
    results = json.loads((root / "reports" / "evaluation" / "results.json").read_text())
    assert set(results["probes"]["sweep"]) == {"color", "iso", "size"}
    assert set(results["probes"]["conflict"]) == {"shape_vs_color"}
    assert len(results["models"]) == 2 and results["reliance"] and results["robustness"]
    assert sorted(p.stem for p in (root / "metrics" / "plots" / "sweeps").iterdir()) == [
        "color", "iso", "size"]
    page = (root / "reports" / "trace_report.html").read_text()
    assert "shape_vs_color" in page or "shape-vs-colour" in page
    assert "http://" not in page and "https://" not in page


def test_a_forced_rerun_reproduces_every_output_byte_for_byte(project):
    """dvc.lock records a hash of every output: run everything again (new MLflow runs, new
    render workers) and it must not change. The run ids stay out of the versioned outputs."""
    root, _ = project
    before = (root / "dvc.lock").read_text()
    sh("dvc", "repro", "-f", cwd=root)
    assert (root / "dvc.lock").read_text() == before
    assert json.loads((root / "models" / "mlflow-run.json").read_text())["model_versions"] == [
        "3", "4"]


def test_metrics_plots_and_the_remote(project, tmp_path):
    root, _ = project
    shown = sh("dvc", "metrics", "show", cwd=root)
    assert "metrics/train.json" in shown and "metrics/evaluate.json" in shown
    sh("dvc", "plots", "show", "-o", str(tmp_path / "plots"), cwd=root)
    assert (tmp_path / "plots" / "index.html").is_file()
    sh("dvc", "push", "-q", cwd=root)
    assert any((root.parent / "remote").rglob("*"))


def test_evaluation_parameter_reruns_only_evaluation_and_noop_runs_nothing(project):
    root, _ = project
    assert "Running stage" not in sh("dvc", "repro", cwd=root)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["evaluate"]["bootstrap"] = 300
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert ran(sh("dvc", "repro", cwd=root)) == {"evaluate", "report"}


def test_a_renamed_experiment_reruns_what_records_the_name(project):
    root, _ = project
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["name"] = "tiny-renamed"
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert ran(sh("dvc", "repro", cwd=root)) == {"validate", "train", "evaluate", "report"}
    results = json.loads((root / "reports" / "evaluation" / "results.json").read_text())
    assert results["experiment"] == "tiny-renamed"
    assert "Running stage" not in sh("dvc", "repro", cwd=root)


@pytest.mark.reliability(8)
def test_dvc_repro_killed_in_training_then_in_evaluation_and_the_next_repro_completes(project):
    """What a user's Ctrl-C (or an out-of-memory kill) does to a run: SIGKILL to the whole
    `dvc repro` while a model trains, again while the evaluation is half-written. The next
    `dvc repro` completes, removes what the killed ones left, and closes their MLflow runs."""
    import os
    import signal
    import subprocess
    import time

    from mlflow import MlflowClient

    from test_dvc import BIN

    root, _ = project
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["train"]["epochs"] = 3  # train, evaluate and report run again
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    moments = {"training": lambda: any((root / "models").glob("replicate-*/checkpoint.pt")),
               "evaluation": lambda: any((root / "reports").glob(".evaluation.*"))}
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    for what, moment in moments.items():
        repro = subprocess.Popen([BIN / "dvc", "repro"], cwd=root, env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                 start_new_session=True)
        deadline = time.monotonic() + 300
        while not moment():
            assert repro.poll() is None, f"dvc repro finished before {what}"
            assert time.monotonic() < deadline, f"{what} never started"
            time.sleep(0.02)
        os.killpg(repro.pid, signal.SIGKILL)
        repro.wait()
    assert any((root / "reports").glob(".evaluation.*"))  # what the kill left
    assert ran(sh("dvc", "repro", cwd=root)) >= {"evaluate", "report"}
    assert "Running stage" not in sh("dvc", "repro", cwd=root)
    assert sh("dvc", "status", cwd=root).strip() == "Data and pipelines are up to date."
    assert not any((root / "reports").glob(".evaluation.*"))
    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(params["name"])
    statuses = [r.info.status for r in client.search_runs([experiment.experiment_id])]
    assert "RUNNING" not in statuses and "KILLED" in statuses
