"""A contact sheet: one row per scene factor, its levels side by side, all else at a base scene.
Look at it whenever the renderer changes."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from ..config import Experiment, load_experiment
from ..contact_sheet import save_contact_sheet
from ..factors import REGISTRY
from ..scenes import render_ids
from . import read_renders, render

# a base scene that shows every factor's effect: a lit, coloured, slightly turned object
BASE = {"shape": "cube", "color": "orange", "rotation": 30.0, "camera_elevation": 20.0,
        "light_azimuth": 40.0}
TILE = 96


def sheet_rows(registry=REGISTRY) -> pd.DataFrame:
    """Every scene factor of `registry` at each of its levels (six across a numeric range)."""
    scene = [name for name, f in registry.items() if f.stage == "scene"]
    rows = []
    for name in scene:
        f = registry[name]
        levels = list(f.levels) if f.is_categorical else list(np.linspace(f.low, f.high, 6))
        if f.integer:  # whole numbers only: the renderer refuses 2.4 lights
            levels = sorted({int(round(v)) for v in levels})
        for level in levels:
            row = {n: registry[n].default for n in scene} | BASE
            row[name] = level
            if name == "texture" or name == "material":
                row["shape"] = "sphere"
            rows.append(row | {"image_id": f"{name}={level}", "factor": name,
                               "level": level if isinstance(level, str) else f"{level:g}",
                               "seed": 1})
    df = pd.DataFrame(rows)
    df["render_id"] = render_ids(df, registry)
    return df


def contact_sheet(params: str | Path | Experiment, out: str | Path, workers: int = 1) -> str:
    exp = params if isinstance(params, Experiment) else load_experiment(params)
    rows = sheet_rows()
    with tempfile.TemporaryDirectory() as tmp:
        render(exp, rows, tmp, workers=workers)
        renders = read_renders(tmp)
    by_id = dict(zip(renders["render_id"], range(len(renders["render_id"]))))
    sheet = [(name, [(row.level, renders["rgb"][by_id[row.render_id]])
                     for row in group.itertuples()])
             for name, group in rows.groupby("factor", sort=False)]
    save_contact_sheet(sheet, out, TILE)
    return f"wrote the contact sheet ({len(sheet)} factors, {len(rows)} renders) to {out}"
