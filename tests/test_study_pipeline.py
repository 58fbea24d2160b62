"""The study pipeline in kfp.local: a study's two variants fanned out with ParallelFor, every
distinct scene rendered once into the shared render cache before they start, the study report
over both, the study in MLflow."""

import re
import sqlite3

import pytest
import yaml

from cuelab.pipeline import compile_pipeline, run_study_local
from cuelab.study import load_study, study_scenes
from test_end_to_end import small_experiment

pytestmark = pytest.mark.slow


def test_the_study_pipeline_renders_each_scene_once_and_reports_every_variant(tmp_path,
                                                                              monkeypatch):
    exp = small_experiment()
    exp["train"]["replicates"] = 1
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(exp))
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({"name": "pair", "base": "params.yaml", "axes": {
        "factors.color.correlation.rho": [0.3, 0.9]}, "replicates": 1}))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    run = run_study_local(path, tmp_path / "work", progress=False)
    study = load_study(path)
    page = run.page.read_text()
    assert "2 of 2 variants finished" in page
    assert all(v.name in page for v in study.variants())
    # every distinct scene rendered once, before the variants: their render steps draw nothing
    distinct = set(study_scenes(study)["render_id"])
    entries = list((tmp_path / "work" / "render-cache").rglob("*.npz"))
    assert {p.stem for p in entries} == distinct and len(entries) == len(distinct)
    log = re.sub(r"\x1b\[[0-9;]*m", "", run.log.read_text())
    taken = re.findall(r"rendered (\d+) images .*?, (\d+) taken from the shared render cache",
                       log)
    variants = [(int(r), int(c)) for r, c in taken if int(c)]
    assert len(variants) == 2 and all(rendered == 0 for rendered, _ in variants)
    with sqlite3.connect(tmp_path / "mlflow.db") as db:
        runs = db.execute("select e.name, r.name from runs r join experiments e "
                          "on r.experiment_id = e.experiment_id").fetchall()
    assert sorted(name for exp_name, name in runs if exp_name == "study pair") == \
        sorted(["study pair", *(v.name for v in study.variants())])


def test_the_compiled_study_pipeline_is_in_sync_with_the_code(tmp_path, monkeypatch):
    from conftest import ROOT

    monkeypatch.delenv("CUELAB_IMAGE", raising=False)
    monkeypatch.delenv("CUELAB_TRAIN_IMAGE", raising=False)
    fresh = compile_pipeline(tmp_path / "study.yaml", study=True).read_text()
    committed = (ROOT / "pipelines" / "cuelab_study_pipeline.yaml").read_text()
    assert fresh == committed, "run `cuelab pipeline compile --study` and commit the YAML"
