"""The Kubeflow pipeline: the committed YAML matches the code, and it runs in kfp.local."""

import json
import os
import subprocess

import yaml

from conftest import BIN, ROOT, tiny_experiment, write_params
from cuelab.pipeline import compile_pipeline, run_local
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


def test_pipeline_runs_in_kfp_local_and_matches_the_steps(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    params = write_params(tmp_path / "params.yaml", tiny_experiment(
        render={"resolution": 32, "samples": 2, "device": "cpu", "chunk_size": 16},
        train={"epochs": 2, "width": 8, "device": "cpu", "replicates": 2},
        evaluate={"bootstrap": 200, "attribution_images": 4}))
    # two render shards in a ParallelFor, merged; the validated dataset pushed to a DVC remote
    run = run_local(params, tmp_path / "kfp", dvc_remote=str(tmp_path / "remote"))
    images = run.outputs["Output"]
    assert images.is_relative_to(tmp_path / "kfp")
    shards = list((tmp_path / "kfp").glob("*/for-loop-*/render/renders"))
    assert len(shards) == 2 and all(any(s.iterdir()) for s in shards)
    merged = next((tmp_path / "kfp").glob("*/merge-renders/renders"))
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
    gate = json.loads(next((tmp_path / "kfp").glob("*/validate/validation.json")).read_text())
    assert gate["passed"] and gate["images"] == len(read_scenes(tmp_path / "scenes.parquet"))
    assert "Great Expectations" in next((tmp_path / "kfp").glob("*/validate/docs")).read_text()
    pointer = yaml.safe_load(next((tmp_path / "kfp").glob("*/version-dataset/pointer")).read_text())
    assert pointer["outs"][0]["md5"] == dataset_version(images)
    assert any((tmp_path / "remote").rglob("*"))
    # then the model, its metrics and the dashboard's pages
    kfp = tmp_path / "kfp"
    configs = sorted(kfp.glob("*/train/model/replicate-*/model.json"))
    assert [json.loads(c.read_text())["num_classes"] for c in configs] == [3, 3]
    assert next(kfp.glob("*/evaluate/evaluation/results.json")).is_file()
    page = next(kfp.glob("*/report/html")).read_text()
    assert "What does the model rely on?" in page and "https://" not in page


def test_cli_run_local(tmp_path):
    params = write_params(tmp_path / "params.yaml", tiny_experiment(
        splits={"train": 3, "val": 1, "test": 1}, sweeps=[], conflicts=[],
        render={"resolution": 32, "samples": 1, "device": "cpu"}))
    r = subprocess.run([BIN / "cuelab", "pipeline", "run-local", "--params", str(params),
                        "--workdir", str(tmp_path / "kfp")], cwd=ROOT, capture_output=True,
                       text=True, env={**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}",
                                       "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'm.db'}"})
    assert r.returncode == 0, r.stderr[-2000:]
    assert "kfp.local ran the pipeline" in r.stdout and "Output:" in r.stdout
