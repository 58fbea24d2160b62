"""The shared model cache: each trained replicate kept once, for every run to take.

A replicate is fixed by its fingerprint (`loop.fingerprint`: the experiment's seed, the label,
the train settings but how many replicates there are, the dataset's version), its index (which
gives its seed), its arithmetic (`loop.arithmetic_of`: on the CPU the instruction set and the
number of threads, which change the bits) and the training code. On the CPU training is
deterministic, so the model a run would train is, bit for bit, the one an earlier run trained
(on a machine with the same arithmetic: a cache shared by machines never hands one the other's
model): one more replicate trains one model, a forced rerun or a study variant that changes
nothing of training trains none.
On a GPU (mixed precision, not bit-exact) the kept model stands for the one a run would train.

An entry is the loop's final state (its per-epoch history, best epoch, seconds, the MLflow run it
was trained in) and the kept weights; the run that takes it logs it as a run of its own, tagged
`cuelab.reused_from`. Layout: <cache>/<key[:2]>/<key>.pt, written under a temporary name and
renamed; an unreadable entry is a miss, trained again and replaced.

Where: `CUELAB_MODEL_CACHE` (a folder, or `off`), else .cuelab/model-cache in the DVC project the
run belongs to (`cuelab.caches`), else no cache.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
from pathlib import Path

import torch

from ..atomic import write_bytes
from ..caches import chosen_folder, ignore_in_git

ENV = "CUELAB_MODEL_CACHE"
NAME = "model-cache"
# The code a model depends on, under src/cuelab/train: the loop, its batches, the networks.
TRAINER_CODE = ("loop.py", "batches.py", "models.py", "adversary.py")


def default_folder(out: Path, choice: str | Path | None = None) -> Path | None:
    """Where the train step into `out` keeps its cache (None: no cache): `choice` (a folder, or
    "off"), else where the module says."""
    return chosen_folder(out, choice, ENV, NAME)


@functools.lru_cache(maxsize=1)
def trainer_fingerprint(root: Path = Path(__file__).parent) -> str:
    code = b"".join(name.encode() + b"\0" + (root / name).read_bytes() for name in TRAINER_CODE)
    return f"torch {torch.__version__}, trainer {hashlib.sha256(code).hexdigest()[:16]}"


class ModelCache:
    def __init__(self, folder: str | Path):
        self.root = Path(folder)

    def key(self, fingerprint: dict, index: int, arithmetic: str) -> str:
        about = {"fingerprint": fingerprint, "replicate": index, "arithmetic": arithmetic,
                 "trainer": trainer_fingerprint()}
        return hashlib.sha256(json.dumps(about, sort_keys=True).encode()).hexdigest()[:32]

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.pt"

    def get(self, key: str) -> dict | None:
        """{"state", "best_weights"} as the loop left them, or None (absent or unreadable)."""
        try:
            entry = torch.load(self.path(key), map_location="cpu", weights_only=True)
            return entry if {"state", "best_weights"} <= entry.keys() else None
        except Exception:  # absent, cut off, foreign: a miss, trained again
            return None

    def put(self, key: str, state: dict, best_weights: dict) -> None:
        ignore_in_git(self.root)
        buf = io.BytesIO()
        torch.save({"state": state, "best_weights": best_weights}, buf)
        write_bytes(self.path(key), buf.getvalue())

    def __len__(self) -> int:
        return sum(1 for _ in self.root.glob("*/*.pt")) if self.root.is_dir() else 0

    def __str__(self) -> str:
        return str(self.root)
