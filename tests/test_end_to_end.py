"""The whole experiment as a user runs it: `dvc repro` of every stage in a fresh git repository,
every output checked; evaluation-only changes rerun only the evaluation; DVC shows the metrics and
plots and round-trips the data through its remote."""

import json
import re
from pathlib import Path

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


def test_the_plots_pages_draw_offline_in_words_and_in_label_order(project, tmp_path):
    """`dvc plots show` and `dvc plots diff`, with the project's plots.html_template (Vega
    inlined), write a page that Chromium with no network draws: a chart per sweep named by its
    factor in words, accuracy beside the flip rate; the confusion matrix in the experiment's
    label order (cube, sphere, cone), not alphabetical. (tests/test_pages.py drives Chromium.)"""
    import shutil

    from conftest import ROOT
    from cuelab.report import words as say
    from test_pages import CHROMIUM, Chromium, charts_drawn, plot_specs, scale_domains

    if CHROMIUM is None:
        pytest.skip("no Chromium to open pages in")
    root, _ = project
    template = sh("dvc", "config", "plots.html_template", cwd=ROOT).strip()
    # `dvc plots diff`: this run's plot data committed in a repository of its own, then changed
    other = tmp_path / "other"
    shutil.copytree(root / "src", other / "src", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(root / "metrics" / "plots", other / "metrics" / "plots")
    shutil.copy(root / "dvc.yaml", other)
    sh("git", "init", "-q", cwd=other)
    sh("dvc", "init", "-q", cwd=other)
    for repo in (root, other):
        sh("dvc", "config", "plots.html_template", template, cwd=repo)
    sh("git", "add", "-A", cwd=other)
    sh("git", "commit", "-qm", "plots", cwd=other)
    color = other / "metrics" / "plots" / "sweeps" / "color.json"
    color.write_text(json.dumps([{**row, "accuracy": 1 - row["accuracy"]}
                                 for row in json.loads(color.read_text())]))
    sh("dvc", "plots", "show", "-o", str(tmp_path / "show"), cwd=root)
    sh("dvc", "plots", "diff", "HEAD", "-o", str(tmp_path / "diff"), cwd=other)

    sweeps = sorted(p.stem for p in (root / "metrics" / "plots" / "sweeps").iterdir())
    classes = small_experiment()["label"]["levels"]
    browser = Chromium(tmp_path / "chromium")
    try:
        for page, revisions in ((tmp_path / "show" / "index.html", ["workspace"]),
                                (tmp_path / "diff" / "index.html", ["HEAD", "workspace"])):
            assert "cdn." not in page.read_text()
            visit = browser.open(page.as_uri(), charts_drawn(len(sweeps) + 1))
            visit.assert_offline()
            assert visit.value, f"{page}: not every plot drawn"
            words = [set(chart["text"]) for chart in visit.value]
            for text in words:
                assert not any("metrics/plots" in t or ".json" in t or "low, accuracy" in t
                               for t in text), text
                assert set(revisions) <= text  # the legend names each revision
            for factor in sweeps:  # one chart per sweep, titled by its factor in words
                (text,) = [t for t in words if say.title(factor) in t]
                assert {"Accuracy", "Flip rate vs the reference level",
                        "share of the sweep's images"} <= text
            assert sum("true class" in t and "decided as" in t for t in words) == 1
            (confusion,) = [s for s in plot_specs(page)
                            if s.get("description", "").startswith("cuelab confusion matrix")]
            assert scale_domains(browser, page, confusion) == {"x": classes, "y": classes}
    finally:
        browser.close()


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
    import contextlib
    import os
    import signal
    import sqlite3
    import subprocess
    import time

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
    # read with sqlite3: an MlflowClient here would keep a pooled connection to the store that
    # a later test in this process would read stale
    with contextlib.closing(sqlite3.connect(root / "mlflow.db")) as store:
        statuses = {s for (s,) in store.execute("select status from runs")}
    assert "RUNNING" not in statuses and "KILLED" in statuses


def test_a_temporary_dvc_experiment_keeps_its_mlflow_runs_in_the_project(project):
    """`dvc exp run --temp` runs in a temporary copy of the project that DVC deletes afterwards:
    its runs, models and artifacts must land in the project's store, named after the experiment
    and what it changed. (Queued experiments: the study test below, whose variants are.)"""
    from mlflow import MlflowClient

    root, _ = project
    sh("git", "add", "-A", cwd=root)
    sh("git", "commit", "-qm", "baseline", cwd=root)
    sh("dvc", "exp", "run", "--temp", "-n", "temp-epochs", "-S", "train.epochs=1", cwd=root)
    assert "temp-epochs" in sh("dvc", "exp", "show", "--no-pager", "--csv", cwd=root)
    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    name = yaml.safe_load((root / "params.yaml").read_text())["name"]
    experiment = client.get_experiment_by_name(name)
    runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    for step in ("train", "evaluate"):
        run_name = f"{step} {name} temp-epochs (train.epochs=1)"
        assert run_name in runs, sorted(runs)
        run = runs[run_name]
        assert run.info.status == "FINISHED" and run.data.tags["dvc.exp_name"] == "temp-epochs"
        assert run.data.params["train.epochs"] == "1"
        # the artifacts beside the project's store, not in the deleted temporary copy
        assert run.info.artifact_uri.startswith((root / "mlruns").as_uri())
    logged = {a.path for a in client.list_artifacts(runs[f"evaluate {name} temp-epochs "
                                                         "(train.epochs=1)"].info.run_id)}
    assert "trace_report.html" in logged  # logged by the report step
    assert "cue.iid.accuracy" in runs[f"train {name} temp-epochs (train.epochs=1)"].data.metrics
    assert not list((root / ".dvc" / "tmp" / "exps").glob("**/mlflow.db"))


def test_a_two_by_two_study_runs_through_dvc_renders_each_scene_once_and_keeps_every_run(
        project, capsys, monkeypatch):
    """The real pipeline, four variants (colour's rho x mitigation), 2 models each, as queued
    DVC experiments: every variant's MLflow runs in the project's store, the study's parent and
    children there too, the study report beside the gathered results, and the render cache
    holding exactly the distinct renders of every scenes table the project sampled."""
    import sqlite3
    import urllib.parse

    from cuelab.cli import main
    from cuelab.config import experiment_from_dict
    from cuelab.sampling import sample_scenes
    from cuelab.study import load_study, study_scenes

    root, _ = project
    (root / "studies").mkdir()
    path = root / "studies" / "grid.yaml"
    path.write_text(yaml.safe_dump({"name": "grid", "base": "../params.yaml", "axes": {
        "factors.color.correlation.rho": [0.2, 0.9],
        "train.mitigation": ["none", "random_background"]}, "replicates": 2}))
    sh("git", "add", "-A", cwd=root)
    sh("git", "commit", "-qm", "a study", cwd=root)
    for key, value in (("GIT_AUTHOR_NAME", "t"), ("GIT_COMMITTER_NAME", "t"),
                       ("GIT_AUTHOR_EMAIL", "t@t"), ("GIT_COMMITTER_EMAIL", "t@t")):
        monkeypatch.setenv(key, value)  # DVC commits each experiment
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(root)
    assert main(["study", "run", str(path), "-j", "2"]) == 0  # tiny steps: two at a time
    out = capsys.readouterr().out
    assert "4 variants run as DVC experiments" in out and "gathered 4" in out, out
    runs = root / "runs" / "grid"
    study = load_study(path)
    new, there = map(int, re.search(r"rendered (\d+) of the study's \d+ distinct scenes into the "
                                    r"render cache .* \((\d+) were there\)", out).groups())
    assert new > 0 and there > 0  # rho 0.2 and 0.9 draw new training rows; the probes are there
    for v in study.variants():
        assert (runs / v.name / "evaluation" / "results.json").is_file()
        assert (runs / v.name / "trace_report.html").is_file()
    assert {"study.html", "study-measures.csv", "study-changes.csv"} <= \
        {p.name for p in runs.iterdir()}
    page = (runs / "study.html").read_text()
    assert "Levels of <code>train.mitigation</code> side by side" in page
    assert "Against <code>factors.color.correlation.rho</code>" in page

    with sqlite3.connect(root / "mlflow.db") as db:  # another process wrote it: read it fresh
        runs_by = db.execute(
            "select e.name, r.name, r.status, r.artifact_uri, "
            "(select value from tags t where t.run_uuid = r.run_uuid and t.key = 'dvc.exp_name'),"
            " (select count(*) from metrics m where m.run_uuid = r.run_uuid "
            "  and m.key = 'cue.iid.accuracy') "
            "from runs r join experiments e on r.experiment_id = e.experiment_id").fetchall()
    for v in study.variants():  # each queued variant's training and evaluation, finished,
        mine = {name.split()[0]: (status, uri, tag, cues)   # named after it, their artifacts
                for exp, name, status, uri, tag, cues in runs_by   # beside the project's store
                if exp == v.name}
        for step in ("train", "evaluate"):
            status, uri, tag, _ = mine[step]
            assert status == "FINISHED" and tag == v.name, (v.name, mine)
            assert uri.startswith((root / "mlruns").as_uri()), uri
        assert mine["train"][3] == 1  # the cue metrics, on the training run too
        logged = Path(urllib.parse.urlparse(mine["evaluate"][1]).path) / "trace_report.html"
        assert logged.is_file()  # logged by the report step
    assert not list((root / ".dvc" / "tmp" / "exps").glob("**/mlflow.db"))
    in_study = sorted(name for exp, name, *_ in runs_by if exp == "study grid")
    assert in_study == sorted(["study grid", *(v.name for v in study.variants())])

    # the cache: one entry per distinct render of every table sampled here, no more
    baseline = experiment_from_dict(yaml.safe_load((root / "params.yaml").read_text()))
    tables = [baseline] + [v.experiment for v in study.variants()]
    distinct = set().union(*(set(sample_scenes(e)["render_id"]) for e in tables))
    entries = list((root / ".cuelab" / "render-cache").rglob("*.npz"))
    assert len(entries) == len(distinct) == len({p.stem for p in entries})
    # ... each drawn once: before the queue, exactly the study's scenes the baseline lacked
    ours = set(study_scenes(study)["render_id"])
    assert (new, there) == (len(ours - set(sample_scenes(baseline)["render_id"])),
                            len(ours & set(sample_scenes(baseline)["render_id"])))
