"""The export step: one split of the dataset as an ImageFolder tree, for code that reads one.

    DIR/
      <class name>/<image_id>.png   the image's exact pixels (PNG is lossless)
      factors.csv                   one row per image: path (relative to DIR), image_id, label,
                                    class, then every factor's value from the scenes table

The shards stay the dataset; an export is a copy to look at or to hand to other tools. Note that
torchvision's ImageFolder numbers classes by sorted folder name: factors.csv's `label` is cuelab's
(the class's place in the experiment's `label.levels`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .atomic import replaced_dir
from .config import load_experiment
from .data import Split, load_split
from .errors import CuelabError
from .factors import FACTOR_NAMES
from .scenes import read_scenes

CSV_NAME = "factors.csv"
CSV_HEAD = ["path", "image_id", "label", "class"]  # then one column per factor
# Stated, not left to OpenCV's default, so the same pixels keep giving the same bytes
PNG_COMPRESSION = 3  # 0-9: higher is smaller and slower


@dataclass
class ExportSummary:
    out: Path
    split: str
    images: int
    classes: int

    def __str__(self) -> str:
        return (f"exported {self.images} images of split {self.split} ({self.classes} classes) "
                f"to {self.out}; factors in {self.out / CSV_NAME}")


def export(params: str | Path, images: str | Path, split: str, out: str | Path,
           scenes: str | Path = "data/scenes.parquet", force: bool = False,
           progress: bool = True) -> ExportSummary:
    """The `export` step: the images of `split` as out/<class>/<image_id>.png, with their
    factors in out/factors.csv. `out` is replaced as a whole; a non-empty folder that is not an
    earlier export is refused unless `force`."""
    import cv2
    from tqdm import tqdm

    out = Path(out)
    classes = load_experiment(params).classes
    table = read_scenes(scenes)
    data = load_split(images, split, mmap=True)  # mapped: a one-shard split is read as written
    _check_out(out, force, {"--images": images, "--scenes": scenes, "--params": params})
    rows = factor_rows(data, table, classes, where=f"split {split!r} of {images}",
                       scenes=scenes, params=params)
    with replaced_dir(out) as tmp:
        for name in rows["class"].unique():  # only classes with images: ImageFolder refuses
            (tmp / name).mkdir()             # an empty class folder
        for image, path in tqdm(zip(data.images, rows.path), total=len(rows), unit="img",
                                desc="export", disable=not progress):
            bgr = cv2.cvtColor(np.asarray(image), cv2.COLOR_RGB2BGR)  # OpenCV writes BGR
            ok, png = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION])
            if not ok:
                raise CuelabError(f"OpenCV could not encode {path} as PNG")
            (tmp / path).write_bytes(png.tobytes())
        rows.to_csv(tmp / CSV_NAME, index=False)
    return ExportSummary(out, split, len(rows), rows["class"].nunique())


def factor_rows(data: Split, table: pd.DataFrame, classes: list[str], where: str,
                scenes: str | Path, params: str | Path) -> pd.DataFrame:
    """factors.csv: one row per image of `data`, in dataset order."""
    by_id = table.set_index("image_id")
    missing = [i for i in data.image_ids if i not in by_id.index]
    if missing:
        raise CuelabError(f"{scenes}: no row for {_images(len(missing))} of {where} "
                          f"({', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''}); "
                          "give the scenes table these images were made from (--scenes)")
    found = by_id.loc[list(data.image_ids)]
    labels = np.asarray(data.labels, np.int64)
    differ = found.label.to_numpy(np.int64) != labels
    if differ.any():
        first = data.image_ids[np.argmax(differ)]
        raise CuelabError(f"{scenes}: {_images(differ.sum())} of {where} with another label "
                          f"there (first: {first}); give the scenes table these images were "
                          "made from (--scenes)")
    if labels.min() < 0 or labels.max() >= len(classes):
        raise CuelabError(f"{where}: labels run to {labels.max()}, but {params} has "
                          f"{len(classes)} classes ({', '.join(classes)}); give the experiment "
                          "the dataset was made from (--params)")
    names = np.asarray(classes, dtype=object)[labels]
    head = pd.DataFrame({"path": [f"{c}/{i}.png" for c, i in zip(names, data.image_ids)],
                         "image_id": data.image_ids, "label": labels, "class": names})
    return pd.concat([head, found[list(FACTOR_NAMES)].reset_index(drop=True)], axis=1)


def _images(n: int) -> str:
    return f"{n} image{'' if n == 1 else 's'}"


def is_export(folder: Path) -> bool:
    """Did `export` write this folder? (Its factors.csv starts with our header.)"""
    try:
        with open(folder / CSV_NAME, encoding="utf-8") as f:
            return f.readline().strip().split(",")[:len(CSV_HEAD)] == CSV_HEAD
    except (OSError, UnicodeDecodeError):
        return False


def _check_out(out: Path, force: bool, inputs: dict[str, str | Path]) -> None:
    """Refuse an --out whose replacement would lose something: the inputs, the current
    directory, a file, or (without --force) a folder of other things."""
    if out.exists() and not out.is_dir():
        raise CuelabError(f"--out {out}: a file is there; give a folder (it is created)")
    target = out.resolve()
    kept = {f"{option} {path}": path for option, path in inputs.items()}
    kept["the current directory"] = Path.cwd()
    for what, path in kept.items():
        path = Path(path).resolve()
        if path == target or target in path.parents:
            raise CuelabError(f"--out {out}: it holds {what}, which the export would delete "
                              "(it replaces the folder); give a folder of its own")
    if out.is_dir() and any(out.iterdir()) and not is_export(out) and not force:
        raise CuelabError(f"--out {out}: a folder that is not empty and not an earlier export "
                          f"(no {CSV_NAME} of one); give a new or empty folder, or --force to "
                          "replace it")
