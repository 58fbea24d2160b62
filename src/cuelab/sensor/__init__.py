"""The sensor step: clean renders + scenes table -> the final images the CNN sees.

Render once, acquire many times: each row's render is looked up by its `render_id`, so rows that
differ only in sensor factors (a sweep over ISO, say) reuse one render and never trigger Blender.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..config import Experiment, load_experiment
from ..data import DatasetWriter
from ..errors import CuelabError
from ..factors import SENSOR_FACTOR_NAMES
from ..render import read_renders
from ..scenes import check_values, read_scenes
from .camera import acquire

ROW_FIELDS = list(SENSOR_FACTOR_NAMES) + ["seed"]


@dataclass
class SensorSummary:
    out: Path
    images: dict[str, int]
    renders_used: int
    seconds: float

    def __str__(self) -> str:
        n = sum(self.images.values())
        per_split = ", ".join(f"{k} {v}" for k, v in self.images.items())
        return (f"acquired {n} images ({per_split}) from {self.renders_used} renders "
                f"({n / self.seconds:.0f} images/s); wrote {self.out} in {self.seconds:.1f} s")


def sensor(params: str | Path | Experiment, scenes: str | Path | pd.DataFrame,
           renders: str | Path, out: str | Path, progress: bool = True) -> SensorSummary:
    """The `sensor` step: every row of the table through the simulated camera."""
    from tqdm import tqdm

    start = time.perf_counter()
    exp = params if isinstance(params, Experiment) else load_experiment(params)
    table = scenes if isinstance(scenes, pd.DataFrame) else read_scenes(scenes)
    check_values(table, SENSOR_FACTOR_NAMES, "acquired")
    clean = read_renders(renders)
    where = {rid: i for i, rid in enumerate(clean["render_id"])}
    missing = table[~table.render_id.isin(where)]
    if len(missing):
        ids = ", ".join(missing.image_id.head(10))
        raise CuelabError(f"{len(missing)} images have no render in {renders} ({ids}"
                          f"{', ...' if len(missing) > 10 else ''}): run `cuelab render` first")
    writer = DatasetWriter(out)
    counts = {}
    try:
        with tqdm(total=len(table), unit="img", desc="sensor", disable=not progress) as bar:
            for split, rows in table.groupby("split", sort=False):
                idx = rows.render_id.map(where).to_numpy()
                images = np.empty((len(rows),) + clean["rgb"].shape[1:], np.uint8)
                masks = np.empty((len(rows),) + clean["mask"].shape[1:], bool)
                for j, (i, row) in enumerate(zip(idx, rows[ROW_FIELDS].to_dict("records"))):
                    images[j], masks[j] = acquire(clean["rgb"][i], clean["mask"][i], row,
                                                  exp.sensor)
                bar.update(len(rows))
                writer.add_split(split, rows.image_id.to_numpy(), rows.label.to_numpy(),
                                 rows.render_id.to_numpy(), images, masks)
                counts[split] = len(rows)
        out = writer.close()
    except BaseException:
        writer.abort()
        raise
    return SensorSummary(out, counts, len(np.unique(table.render_id)),
                         time.perf_counter() - start)
