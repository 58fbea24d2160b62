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
    """The dataset's index.parquet, checked at the door (`cuelab.scenes.read_table`): there, a
    whole Parquet table, with the columns the readers need, labels and offsets whole numbers."""
    from ..scenes import read_table

    path = Path(root) / "index.parquet"
    if not path.is_file():
        raise CuelabError(f"no dataset in {root} (index.parquet is missing): run "
                          "`cuelab sensor` first")
    index = read_table(path, "dataset index", INDEX_COLUMNS, "cuelab sensor")
    for column in ("label", "offset"):
        if not pd.api.types.is_integer_dtype(index[column]):
            raise CuelabError(f"{path}: not a dataset index of this cuelab: column {column} "
                              f"holds {index[column].dtype} values, not whole numbers; run "
                              "`cuelab sensor` again")
    return index


def load_split(root: str | Path, split: str, mmap: bool = False) -> Split:
    """Every image of one split, in table order; `mmap` maps the shards instead of reading.
    Each shard is checked at the door (`_read_shard`): there, a whole .npy array of the right
    kind and shape, holding every image the index puts in it."""
    root = Path(root)
    index = read_index(root)
    rows = index[index.split == split]
    if rows.empty:
        raise CuelabError(f"split {split!r} is not in {root}; it has: "
                          + ", ".join(index.split.unique()))
    shards = list(dict.fromkeys(rows.shard))
    if len(shards) > 1:  # each shard's rows together, in the order of the shards
        rows = pd.concat([rows[rows.shard == s] for s in shards])
    parts = [_read_shard(root, s, rows[rows.shard == s], mmap) for s in shards]
    sizes = {images.shape[1:] for images, _ in parts}
    if len(sizes) > 1:
        raise CuelabError(f"{root}: the shards of split {split!r} hold images of different "
                          f"sizes ({', '.join(str(s) for s in sorted(sizes))}); run `cuelab "
                          "sensor` again")
    ids, labels = rows.image_id.to_numpy(dtype=str), rows.label.to_numpy()
    if len(parts) == 1:
        return Split(ids, labels, *parts[0])
    return Split(ids, labels, np.concatenate([p[0] for p in parts]),
                 np.concatenate([p[1] for p in parts]))


INDEX_COLUMNS = ("image_id", "split", "label", "shard", "offset")
AGAIN = "run `cuelab sensor` again"


def _read_shard(root: Path, shard: str, rows: pd.DataFrame, mmap: bool
                ) -> tuple[np.ndarray, np.ndarray]:
    """A shard's images and masks at the offsets `rows` (of the index) give, the whole arrays
    when they are every image in order. Missing, truncated or foreign files, or arrays of another
    kind or shape, are a `CuelabError` naming the file and the images the index puts there."""
    paths = [root / f"{shard}.images.npy", root / f"{shard}.masks.npy"]
    ids = ", ".join(rows.image_id.astype(str).head(3)) + (", ..." if len(rows) > 3 else "")
    where = f"{root / 'index.parquet'} puts {len(rows)} images there ({ids})"
    images = _read_array(paths[0], np.uint8, "images (n, height, width, 3)", mmap, where)
    masks = _read_array(paths[1], np.bool_, "masks (n, height, width)", mmap, where)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise CuelabError(f"{paths[0]}: holds uint8 {images.shape}, not images (n, height, "
                          f"width, 3); {AGAIN}")
    if masks.shape != images.shape[:3]:
        raise CuelabError(f"{paths[1]}: holds masks {masks.shape}, not one per image of "
                          f"{paths[0]} {images.shape[:3]}; {AGAIN}")
    offsets = rows.offset.to_numpy()
    beyond = rows[(offsets < 0) | (offsets >= len(images))]
    if len(beyond):
        shown = ", ".join(f"{r.image_id} at {r.offset}" for r in beyond.head(3).itertuples())
        raise CuelabError(f"{paths[0]}: holds {len(images)} images; {root / 'index.parquet'} "
                          f"puts {len(beyond)} beyond them ({shown}"
                          f"{', ...' if len(beyond) > 3 else ''}); {AGAIN}")
    if np.array_equal(offsets, np.arange(len(images))):
        return images, masks
    return np.asarray(images[offsets]), np.asarray(masks[offsets])


def _read_array(path: Path, dtype, what: str, mmap: bool, where: str) -> np.ndarray:
    """One .npy file of a shard, its header read first: a missing, truncated or foreign file,
    or one of another element type, is a `CuelabError` naming it."""
    from ..inputs import holds, said

    if not path.is_file():
        raise CuelabError(f"{path}: missing, and {where}; {AGAIN}")
    fmt = np.lib.format
    try:
        with open(path, "rb") as f:
            version = fmt.read_magic(f)
            read_header = fmt.read_array_header_1_0 if version == (1, 0) else \
                fmt.read_array_header_2_0
            shape, _, found = read_header(f)
            start = f.tell()
    except (OSError, ValueError, SyntaxError, TypeError) as e:
        raise CuelabError(f"{path}: not a NumPy .npy array: it holds {holds(path)} "
                          f"({said(e)}); {AGAIN}") from None
    if found != np.dtype(dtype):
        raise CuelabError(f"{path}: holds {found} {shape}, not {np.dtype(dtype)} {what}; "
                          f"{AGAIN}")
    size, needed = path.stat().st_size, start + int(np.prod(shape)) * found.itemsize
    if size < needed:
        raise CuelabError(f"{path}: truncated: {size} of the {needed} bytes its header "
                          f"announces for {found} {shape}; {AGAIN}")
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise CuelabError(f"{path}: not readable ({said(e)}); {AGAIN}") from None

