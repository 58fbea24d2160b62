"""The dataset on disk: the final images and masks in a few large shards, and one index.

    data/images/
      index.parquet             image_id, split, label, render_id, shard, offset, content_hash
                                (one row per image: the render it came from, where it is, and
                                a hash of its pixels and mask that the data gate checks)
      train-00000.images.npy    (n, H, W, 3) uint8   at most SHARD_SIZE images per shard
      train-00000.masks.npy     (n, H, W) bool       the target object's exact pixels
      ...

Plain .npy files so a split can be memory-mapped; a 50,000-image dataset is about a hundred files.
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..atomic import swap_in, temp_dir_beside
from ..errors import CuelabError

SHARD_SIZE = 2048


@dataclass
class Split:
    image_ids: np.ndarray  # unicode strings (not objects: saved with them, no pickle needed)
    labels: np.ndarray
    images: np.ndarray   # (n, H, W, 3) uint8
    masks: np.ndarray    # (n, H, W) bool


class DatasetWriter:
    """Writes into a temporary directory beside `out` and swaps it in on `close`, so readers
    never see a half-written dataset."""

    def __init__(self, out: str | Path):
        self.out = Path(out)
        self.tmp = temp_dir_beside(self.out)
        self.index: list[pd.DataFrame] = []

    def add_split(self, split: str, image_ids, labels, render_ids, images: np.ndarray,
                  masks: np.ndarray):
        for k, start in enumerate(range(0, len(image_ids), SHARD_SIZE)):
            end = start + SHARD_SIZE
            shard = f"{split}-{k:05d}"
            np.save(self.tmp / f"{shard}.images.npy", images[start:end])
            np.save(self.tmp / f"{shard}.masks.npy", masks[start:end])
            n = len(image_ids[start:end])
            self.index.append(pd.DataFrame({
                "image_id": image_ids[start:end], "split": split,
                "label": np.asarray(labels[start:end], np.int64),
                "render_id": render_ids[start:end], "shard": shard,
                "offset": np.arange(n, dtype=np.int64),
                "content_hash": content_hashes(images[start:end], masks[start:end])}))

    def close(self) -> Path:
        pd.concat(self.index, ignore_index=True).to_parquet(self.tmp / "index.parquet",
                                                            index=False)
        return swap_in(self.tmp, self.out)

    def abort(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


def content_hashes(images: np.ndarray, masks: np.ndarray) -> list[str]:
    """A hash of each image's pixels and mask: recorded when the image is made, checked by the
    data gate, so an image swapped, replaced or edited afterwards is named before training."""
    return [hashlib.blake2b(image.tobytes() + mask.tobytes(), digest_size=16).hexdigest()
            for image, mask in zip(images, masks)]


def read_index(root: str | Path) -> pd.DataFrame:
    path = Path(root) / "index.parquet"
    if not path.is_file():
        raise CuelabError(f"no dataset in {root} (index.parquet is missing): run "
                          "`cuelab sensor` first")
    return pd.read_parquet(path)


def load_split(root: str | Path, split: str, mmap: bool = False) -> Split:
    """Every image of one split, in table order; `mmap` maps the shards instead of reading."""
    root = Path(root)
    index = read_index(root)
    rows = index[index.split == split]
    if rows.empty:
        raise CuelabError(f"split {split!r} is not in {root}; it has: "
                          + ", ".join(index.split.unique()))
    mode = "r" if mmap else None
    shards = list(dict.fromkeys(rows.shard))
    images = [np.load(root / f"{s}.images.npy", mmap_mode=mode) for s in shards]
    masks = [np.load(root / f"{s}.masks.npy", mmap_mode=mode) for s in shards]
    ids, labels = rows.image_id.to_numpy(dtype=str), rows.label.to_numpy()
    if len(shards) == 1:
        return Split(ids, labels, images[0], masks[0])
    return Split(ids, labels, np.concatenate(images), np.concatenate(masks))

