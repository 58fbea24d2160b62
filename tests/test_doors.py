"""Every step checks its inputs at the door: a missing, empty, truncated, garbled or foreign
input file ends the real CLI with a clean error (exit status non-zero, no traceback) that names
the file, and leaves every output unwritten and every input as it was.

One table, one case per broken input: (step, the file broken, how). Each case copies a small
real project (the session's tiny dataset, a tiny model trained once and evaluated once), breaks
one file in the copy and runs `cuelab <step>` on it as a user would. A case costs one CLI start
(about 1 s; train and evaluate, which import torch and MLflow, a few)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import BIN, write_params

pytestmark = pytest.mark.slow

# Training as small as it gets: the model only has to exist.
TRAIN = {"model": "simple_cnn", "width": 4, "epochs": 1, "batch_size": 8,
         "augment": {"crop": False}, "replicates": 1, "device": "cpu"}
EVALUATE = {"bootstrap": 100, "attribution_images": 2, "occlusion_patch": 8}

OUT = "out"  # every output of every case goes under here: it must not appear

ARGS = {
    "sample": ["--params", "params.yaml", "--out", f"{OUT}/scenes.parquet"],
    "render": ["--params", "params.yaml", "--scenes", "scenes.parquet", "--out",
               f"{OUT}/renders", "--workers", "1"],
    "sensor": ["--params", "params.yaml", "--scenes", "scenes.parquet", "--renders", "renders",
               "--out", f"{OUT}/images"],
    "validate": ["--params", "params.yaml", "--scenes", "scenes.parquet", "--images", "images",
                 "--docs", f"{OUT}/docs", "--summary", f"{OUT}/validation.json"],
    "train": ["--params", "params.yaml", "--images", "images", "--models", f"{OUT}/models",
              "--metrics", f"{OUT}/train.json"],
    "evaluate": ["--params", "params.yaml", "--scenes", "scenes.parquet", "--images", "images",
                 "--models", "models", "--out", f"{OUT}/evaluation", "--metrics",
                 f"{OUT}/evaluate.json", "--plots", f"{OUT}/plots"],
    "report": ["--params", "params.yaml", "--evaluation", "evaluation", "--out",
               f"{OUT}/report.html", "--validation", "validation.json", "--train-metrics",
               "train.json"],
}


@pytest.fixture(scope="module")
def project(tiny_dataset, tmp_path_factory) -> dict:
    """A small complete project, as a user's folder holds it after `cuelab evaluate`, and the
    environment to run the CLI in (its own SQLite MLflow store)."""
    from cuelab.config import experiment_from_dict
    from cuelab.evaluate import evaluate
    from cuelab.train import train

    root = tmp_path_factory.mktemp("doors")
    base, scratch = root / "project", root / "scratch"
    base.mkdir()
    scratch.mkdir()
    exp = yaml.safe_load(tiny_dataset["params"].read_text())
    exp.update(train=TRAIN, evaluate=EVALUATE)
    write_params(base / "params.yaml", exp)
    shutil.copy(tiny_dataset["scenes"], base / "scenes.parquet")
    for name in ("renders", "images"):
        shutil.copytree(tiny_dataset[name], base / name)
    store = f"sqlite:///{root / 'mlflow.db'}"
    experiment = experiment_from_dict(exp)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", store)
        train(experiment, base / "images", base / "models", base / "train.json", progress=False)
        evaluate(experiment, base / "scenes.parquet", base / "images", base / "models",
                 base / "evaluation", scratch / "evaluate.json", scratch / "plots",
                 progress=False)
    env = {**os.environ, "MLFLOW_TRACKING_URI": store, "MLFLOW_DISABLE_TELEMETRY": "true",
           "DVC_NO_ANALYTICS": "1", "PYTHONWARNINGS": "ignore"}
    return {"base": base, "env": env}


# --- ways to break a file -------------------------------------------------------------------------

Break = Callable[[Path, Path], None]  # (the file, the project folder)


def missing(path: Path, work: Path) -> None:
    shutil.rmtree(path) if path.is_dir() else path.unlink()


def empty(path: Path, work: Path) -> None:
    path.write_bytes(b"")


def half(path: Path, work: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def noise(path: Path, work: Path) -> None:
    size = max(path.stat().st_size if path.exists() else 0, 4096)
    path.write_bytes(random.Random(path.name).randbytes(size))


def png(path: Path, work: Path) -> None:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(buffer, format="PNG")
    path.write_bytes(buffer.getvalue())


def copy_of(other: str) -> Break:
    """A valid file of another kind in its place."""
    return lambda path, work: shutil.copy(work / other, path)


def text(content: str) -> Break:
    return lambda path, work: path.write_text(content)


def edit_json(change: Callable[[dict], object]) -> Break:
    def apply(path: Path, work: Path) -> None:
        data = json.loads(path.read_text())
        path.write_text(json.dumps(change(data)))
    return apply


def drop_keys(*keys: str) -> Callable[[dict], dict]:
    return lambda d: {k: v for k, v in d.items() if k not in keys}


def edit_table(change: Callable[[pd.DataFrame], pd.DataFrame]) -> Break:
    def apply(path: Path, work: Path) -> None:
        change(pd.read_parquet(path)).to_parquet(path, index=False)
    return apply


def drop_column(name: str) -> Break:
    return edit_table(lambda t: t.drop(columns=[name]))


def shard_renamed(split: str, shard: str) -> Break:
    """The index points the split's rows at a shard that does not exist."""
    def change(t):
        t.loc[t.split == split, "shard"] = shard
        return t
    return edit_table(change)


def npy(make: Callable[[np.ndarray], np.ndarray]) -> Break:
    """The array file rewritten whole, as something else."""
    return lambda path, work: np.save(path, make(np.load(path)))


def npz(**arrays: np.ndarray) -> Break:
    return lambda path, work: np.savez(path.with_suffix(""), **arrays)  # savez adds .npz


def chunk_with(change: Callable[[dict], dict]) -> Break:
    def apply(path: Path, work: Path) -> None:
        with np.load(path) as z:
            arrays = {k: z[k] for k in z.files}
        np.savez(path.with_suffix(""), **change(arrays))
    return apply


def torch_save(make: Callable[[], object]) -> Break:
    def apply(path: Path, work: Path) -> None:
        import torch

        torch.save(make(), path)
    return apply


def other_network():
    from cuelab.train import build_model

    return build_model("simple_cnn", 5, 8, 32).state_dict()


# faces that point past the last vertex; lines that are no OBJ at all
OBJ_MISSING_VERTICES = "v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\nf 1 2 7\n"
OBJ_GARBAGE = "v 0 0 0\nv 1 0 0\nv 0 1 0\nv zero one two\nf 1 2 3\nf 1 x 2\n"


def mesh_in_params(obj: str) -> Break:
    """The experiment asks for a user mesh as one of its classes; the mesh is broken."""
    def apply(path: Path, work: Path) -> None:
        (work / "bad.obj").write_text(obj)
        exp = yaml.safe_load(path.read_text())
        exp["label"]["levels"][-1] = "mesh:bad.obj"  # in place of 'cone'
        pairs = exp["factors"]["texture"]["correlation"]["pairs"]
        pairs["mesh:bad.obj"] = pairs.pop("cone")
        path.write_text(yaml.safe_dump(exp, sort_keys=False))
    return apply


def mesh_in_table(obj: str) -> Break:
    """A table sampled while the mesh was fine; the mesh broke since."""
    def apply(path: Path, work: Path) -> None:
        (work / "bad.obj").write_text(obj)
        t = pd.read_parquet(path)
        t.loc[t.index[3], "shape"] = "mesh:bad.obj"
        t.to_parquet(path, index=False)
    return apply


# --- the table ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    step: str
    file: str             # the input broken, relative to the project folder
    how: Break
    name: str             # the case's id
    named: str = ""       # what the message must name, when not `file`
    says: str = ""        # a word the message must hold besides the name


SCENES, INDEX = "scenes.parquet", "images/index.parquet"
CHUNK = "renders/chunk-00001.npz"
MODELS, CONFIG, WEIGHTS = "models/models.json", "models/replicate-0/model.json", \
    "models/replicate-0/model.pt"
RESULTS = "evaluation/results.json"

CASES = [
    Case("sample", "params.yaml", missing, "params-missing"),
    Case("sample", "params.yaml", noise, "params-random-bytes"),
    Case("sample", "params.yaml", mesh_in_params(OBJ_MISSING_VERTICES),
         "mesh-faces-past-the-vertices", named="bad.obj", says="vertex 7"),
    Case("sample", "params.yaml", mesh_in_params(OBJ_GARBAGE), "mesh-unparsable-lines",
         named="bad.obj", says="line 4"),

    Case("render", SCENES, missing, "scenes-missing", says="cuelab sample"),
    Case("render", SCENES, empty, "scenes-empty", says="cuelab sample"),
    Case("render", SCENES, half, "scenes-truncated", says="cuelab sample"),
    Case("render", SCENES, noise, "scenes-random-bytes", says="cuelab sample"),
    Case("render", SCENES, copy_of(INDEX), "scenes-is-the-index", says="missing column"),
    Case("render", SCENES, drop_column("color"), "scenes-without-color", says="color"),
    Case("render", SCENES, mesh_in_table(OBJ_MISSING_VERTICES), "mesh-broke-after-sampling",
         named="bad.obj", says="vertex 7"),
    Case("render", SCENES, mesh_in_table(OBJ_GARBAGE), "mesh-garbage-after-sampling",
         named="bad.obj", says="line 4"),

    Case("sensor", SCENES, half, "scenes-truncated"),
    Case("sensor", SCENES, drop_column("iso"), "scenes-without-iso", says="iso"),
    Case("sensor", "renders", missing, "renders-missing", says="cuelab render"),
    Case("sensor", CHUNK, half, "chunk-truncated", says="cuelab render"),
    Case("sensor", CHUNK, noise, "chunk-random-bytes", says="cuelab render"),
    Case("sensor", CHUNK, npz(x=np.zeros(3)), "chunk-of-other-arrays", says="rgb"),
    Case("sensor", CHUNK, chunk_with(lambda a: a | {"rgb": a["rgb"][..., 0]}),
         "chunk-rgb-without-channels", says="rgb"),

    # (a damaged shard is the data gate's own finding: exit 1, its images named, its Data Docs
    # written; tests/test_validate.py)
    Case("validate", SCENES, missing, "scenes-missing"),
    Case("validate", SCENES, copy_of(INDEX), "scenes-is-the-index", says="missing column"),
    Case("validate", INDEX, missing, "index-missing", named="images (index.parquet is missing)",
         says="cuelab sensor"),
    Case("validate", INDEX, half, "index-truncated", says="cuelab sensor"),
    Case("validate", INDEX, png, "index-is-a-png", says="PNG"),
    Case("validate", INDEX, drop_column("shard"), "index-without-shard", says="shard"),

    Case("train", "images", missing, "images-missing"),
    Case("train", INDEX, noise, "index-random-bytes"),
    Case("train", "images/train-00000.images.npy", half, "train-shard-truncated",
         says="truncated"),
    Case("train", "images/train-00000.masks.npy", empty, "train-masks-empty"),
    Case("train", INDEX, shard_renamed("train", "train-00007"), "index-names-a-missing-shard",
         named="train-00007", says="train-000000"),

    Case("evaluate", SCENES, missing, "scenes-missing"),
    Case("evaluate", SCENES, drop_column("label"), "scenes-without-label", says="label"),
    Case("evaluate", "images/test-00000.images.npy", half, "test-shard-truncated",
         says="truncated"),
    Case("evaluate", "images/sweep-00000.masks.npy", npy(lambda a: a.astype(np.uint8)),
         "sweep-masks-not-bool", says="uint8"),
    Case("evaluate", "images/conflict-00000.images.npy", npy(lambda a: a[..., 0]),
         "conflict-images-without-channels"),
    Case("evaluate", INDEX, shard_renamed("test", "test-00003"), "index-names-a-missing-shard",
         named="test-00003"),
    Case("evaluate", MODELS, missing, "models-index-missing", says="cuelab train"),
    Case("evaluate", MODELS, text('{"replicates": ["replicate-0"'), "models-index-not-json"),
    Case("evaluate", MODELS, edit_json(lambda d: d | {"replicates": "replicate-0"}),
         "models-index-replicates-a-string", says="replicates"),
    Case("evaluate", MODELS, edit_json(lambda d: d | {"replicates": ["replicate-7"]}),
         "models-index-names-a-missing-folder", named="replicate-7"),
    Case("evaluate", CONFIG, missing, "config-missing"),
    Case("evaluate", CONFIG, half, "config-truncated"),
    Case("evaluate", CONFIG, edit_json(lambda d: d | {"num_classes": "three"}),
         "config-num-classes-a-string", says="num_classes"),
    Case("evaluate", CONFIG, edit_json(drop_keys("architecture", "input_size")),
         "config-without-architecture", says="architecture"),
    Case("evaluate", CONFIG, text("[1, 2, 3]"), "config-a-list"),
    Case("evaluate", WEIGHTS, missing, "weights-missing", says="cuelab train"),
    Case("evaluate", WEIGHTS, empty, "weights-empty", says="cuelab train"),
    Case("evaluate", WEIGHTS, half, "weights-truncated", says="cuelab train"),
    Case("evaluate", WEIGHTS, noise, "weights-random-bytes", says="cuelab train"),
    Case("evaluate", WEIGHTS, png, "weights-a-png", says="PNG"),
    Case("evaluate", WEIGHTS, copy_of(SCENES), "weights-a-parquet-table", says="Parquet"),
    Case("evaluate", WEIGHTS, torch_save(other_network), "weights-of-another-network"),
    Case("evaluate", WEIGHTS, torch_save(lambda: {"epoch": 3, "note": "hello"}),
         "weights-not-tensors"),

    Case("report", RESULTS, missing, "results-missing", says="cuelab evaluate"),
    Case("report", RESULTS, half, "results-truncated", says="cuelab evaluate"),
    Case("report", RESULTS, edit_json(lambda d: d | {"experiment": 3, "probes": []}),
         "results-wrong-types"),
    Case("report", "evaluation/attribution/maps.npz", half, "maps-truncated",
         says="cuelab evaluate"),
    Case("report", "validation.json", noise, "validation-random-bytes"),
    Case("report", "validation.json", text('{"passed": true, "failures": 3}'),
         "validation-wrong-types", says="failures"),
    Case("report", "train.json", text('{"epochs": [1'), "train-metrics-truncated"),
]


def snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.reliability(6)
@pytest.mark.parametrize("case", CASES, ids=[f"{c.step}-{c.name}" for c in CASES])
def test_a_broken_input_is_refused_at_the_door(case, project, tmp_path):
    work = tmp_path / "project"
    shutil.copytree(project["base"], work)
    path = work / case.file
    case.how(path, work)
    before = snapshot(work)

    r = subprocess.run([BIN / "cuelab", case.step, *ARGS[case.step]], cwd=work,
                       env=project["env"], capture_output=True, text=True, timeout=300)

    message = " | ".join(line.strip() for line in r.stderr.strip().splitlines())
    print(f"{case.step}-{case.name}: {message}")  # the table of messages: pytest -rP
    assert r.returncode != 0, r.stdout
    assert "Traceback" not in r.stderr, r.stderr
    assert f"cuelab {case.step}: error: " in r.stderr, r.stderr
    assert (case.named or case.file) in r.stderr, r.stderr
    assert case.says in r.stderr, r.stderr
    assert not (work / OUT).exists(), sorted(p.name for p in (work / OUT).rglob("*"))
    assert snapshot(work) == before  # nothing else written, moved or removed
