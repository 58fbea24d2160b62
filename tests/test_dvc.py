"""`dvc repro` in a fresh git repository runs the stages, and reruns only what changed."""

import os
import subprocess

import pandas as pd
import pytest
import yaml

from conftest import BIN, copy_project, tiny_experiment
from cuelab.data import read_index
from cuelab.render import read_renders
from cuelab.sampling import sample


def sh(*cmd, cwd):
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1",
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert r.returncode == 0, f"{' '.join(cmd)}:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"
    return r.stdout


def ran(out: str) -> set[str]:
    """The stages `dvc repro` ran (the params stage re-resolves on any edit: left out)."""
    return {line.split("'")[1] for line in out.splitlines()
            if line.startswith("Running stage '")} - {"params"}


@pytest.fixture
def repo(tmp_path):
    root = tmp_path / "project"
    root.mkdir()
    copy_project(root)
    (root / "params.yaml").write_text(yaml.safe_dump(tiny_experiment(  # no sensor section
        render={"resolution": 32, "samples": 2, "device": "cpu", "chunk_size": 32}),
        sort_keys=False))
    sh("git", "init", "-q", cwd=root)
    sh("dvc", "init", "-q", cwd=root)
    sh("git", "add", "-A", cwd=root)
    sh("git", "commit", "-qm", "init", cwd=root)
    return root


def test_data_stages_run_and_are_incremental(repo, tmp_path):
    """The data half of the DAG (`dvc repro sensor`: sample, render, sensor)."""
    out = sh("dvc", "repro", "sensor", cwd=repo)
    assert ran(out) == {"sample", "render", "sensor"}
    scenes = repo / "data" / "scenes.parquet"
    sample(repo / "params.yaml", tmp_path / "direct.parquet")
    assert scenes.read_bytes() == (tmp_path / "direct.parquet").read_bytes()
    renders = read_renders(repo / "data" / "renders")
    assert len(renders["render_id"]) == pd.read_parquet(scenes).render_id.nunique()
    assert renders["rgb"].shape[1:] == (32, 32, 3)
    index = read_index(repo / "data" / "images")
    assert index.image_id.tolist() == pd.read_parquet(scenes).image_id.tolist()
    assert "Running stage" not in sh("dvc", "repro", "sensor", cwd=repo)

    # a renamed experiment: the data do not record the name
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["name"] = "tiny-renamed"
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert ran(sh("dvc", "repro", "sensor", cwd=repo)) == set()

    # a new level in a sensor sweep: new rows, the same scenes; nothing is re-rendered
    params["sweeps"][1]["levels"] = [0, 1600, 6400]
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = sh("dvc", "repro", "sensor", cwd=repo)
    assert "rendered 0 images" in out and "acquired" in out
    assert len(read_index(repo / "data" / "images")) == len(index) + 4

    # a training parameter changes no data
    params["train"] = {"epochs": 3}
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert ran(sh("dvc", "repro", "sensor", cwd=repo)) == set()

    # a render setting reruns rendering and what follows, not sampling
    params["render"]["samples"] = 1
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert ran(sh("dvc", "repro", "sensor", cwd=repo)) == {"render", "sensor"}

    # a camera constant reruns only the camera
    params["sensor"] = {"read_noise": 5.0}
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert ran(sh("dvc", "repro", "sensor", cwd=repo)) == {"sensor"}

    # the seed reruns both
    params["seed"] = 11
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert ran(sh("dvc", "repro", "sensor", cwd=repo)) == {"sample", "render", "sensor"}
    assert scenes.read_bytes() != (tmp_path / "direct.parquet").read_bytes()
    assert "up to date" in sh("dvc", "status", "sensor", cwd=repo)
