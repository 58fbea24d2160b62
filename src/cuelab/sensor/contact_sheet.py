"""A contact sheet: one render through each sensor factor's levels, all else at identity."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..config import Experiment, load_experiment
from ..contact_sheet import save_contact_sheet
from ..factors import REGISTRY, SENSOR_FACTOR_NAMES
from ..render import read_renders
from .camera import acquire

TILE = 128
# A factor that only qualifies a stage (camera.Stage.params) shows nothing on its own: its row
# is drawn with that stage switched on, at these values (one entry per such factor, see tests).
COMPANIONS = {"motion_blur_angle": {"motion_blur_length": 8.0},
              "resample_method": {"resample_scale": 0.35},
              "jpeg_subsampling": {"jpeg_quality": 30}}


def contact_sheet(params: str | Path | Experiment, renders: str | Path, out: str | Path,
                  image: int = 0) -> str:
    exp = params if isinstance(params, Experiment) else load_experiment(params)
    clean = read_renders(renders)
    rgb, mask = clean["rgb"][image], clean["mask"][image]
    identity = {n: REGISTRY[n].default for n in SENSOR_FACTOR_NAMES} | {"seed": 1}
    rows = []
    for name in SENSOR_FACTOR_NAMES:
        f = REGISTRY[name]
        levels = list(f.levels) if f.is_categorical else list(np.linspace(f.low, f.high, 6))
        if f.integer:
            levels = [int(round(v)) for v in levels]
        rows.append((name, [(v, acquire(rgb, mask, identity | COMPANIONS.get(name, {})
                                        | {name: v}, exp.sensor)[0]) for v in levels]))
    captions = [(name, [(v if isinstance(v, str) else f"{v:g}", img) for v, img in tiles])
                for name, tiles in rows]
    save_contact_sheet(captions, out, TILE)
    return f"wrote the sensor contact sheet ({len(rows)} factors) to {out}"
