"""The Kubeflow pipeline: the committed YAML matches the code, and it runs in kfp.local."""

import os
import subprocess

from conftest import BIN, ROOT
from cuelab.pipeline import compile_pipeline, run_local
from cuelab.sampling import sample


def test_compiled_pipeline_is_in_sync_with_the_code(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    monkeypatch.delenv("CUELAB_IMAGE", raising=False)
    fresh = compile_pipeline(tmp_path / "pipeline.yaml").read_text()
    committed = (ROOT / "pipelines" / "cuelab_pipeline.yaml").read_text()
    assert fresh == committed, "run `cuelab pipeline compile` and commit the YAML"


def test_pipeline_runs_in_kfp_local_and_matches_the_step(tmp_path, tiny_params, monkeypatch):
    monkeypatch.chdir(ROOT)
    run = run_local(tiny_params, tmp_path / "kfp")
    scenes = run.outputs["Output"]
    assert scenes.is_relative_to(tmp_path / "kfp")
    direct = tmp_path / "direct.parquet"
    sample(tiny_params, direct)
    assert scenes.read_bytes() == direct.read_bytes()


def test_cli_run_local(tmp_path, tiny_params):
    r = subprocess.run([BIN / "cuelab", "pipeline", "run-local", "--params", str(tiny_params),
                        "--workdir", str(tmp_path / "kfp")], cwd=ROOT, capture_output=True,
                       text=True, env={**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"})
    assert r.returncode == 0, r.stderr[-2000:]
    assert "kfp.local ran the pipeline" in r.stdout and "Output:" in r.stdout
