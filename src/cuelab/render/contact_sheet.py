"""A contact sheet: one row per scene factor, its levels side by side, all else at a base scene.
Look at it whenever the renderer changes."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from ..config import Experiment, load_experiment
from ..factors import REGISTRY, SCENE_FACTOR_NAMES
from ..sampling import _render_ids
from . import read_renders, render

# a base scene that shows every factor's effect: a lit, coloured, slightly turned object
BASE = {"shape": "cube", "color": "orange", "rotation": 30.0, "camera_elevation": 20.0,
        "light_azimuth": 40.0}
TILE, LABEL_W, TEXT_H = 96, 150, 14


def sheet_rows() -> pd.DataFrame:
    rows = []
    for name in SCENE_FACTOR_NAMES:
        f = REGISTRY[name]
        levels = list(f.levels) if f.is_categorical else list(np.linspace(f.low, f.high, 6))
        for level in levels:
            row = {n: REGISTRY[n].default for n in SCENE_FACTOR_NAMES} | BASE
            row[name] = level
            if name == "texture" or name == "material":
                row["shape"] = "sphere"
            rows.append(row | {"image_id": f"{name}={level}", "factor": name,
                               "level": level if isinstance(level, str) else f"{level:g}",
                               "seed": 1})
    df = pd.DataFrame(rows)
    df["render_id"] = _render_ids(df)
    return df


def contact_sheet(params: str | Path | Experiment, out: str | Path, workers: int = 1) -> str:
    exp = params if isinstance(params, Experiment) else load_experiment(params)
    rows = sheet_rows()
    with tempfile.TemporaryDirectory() as tmp:
        render(exp, rows, tmp, workers=workers)
        renders = read_renders(tmp)
    by_id = dict(zip(renders["render_id"], range(len(renders["render_id"]))))
    factors = list(dict.fromkeys(rows.factor))
    width = LABEL_W + max(rows.groupby("factor").size()) * TILE
    sheet = Image.new("RGB", (width, len(factors) * (TILE + TEXT_H)), "white")
    draw = ImageDraw.Draw(sheet)
    for r, name in enumerate(factors):
        y = r * (TILE + TEXT_H)
        draw.text((4, y + TILE // 2), name, fill="black")
        for c, (_, row) in enumerate(rows[rows.factor == name].iterrows()):
            i = by_id[row.render_id]
            tile = Image.fromarray(renders["rgb"][i]).resize((TILE, TILE), Image.NEAREST)
            x = LABEL_W + c * TILE
            sheet.paste(tile, (x, y))
            draw.text((x + 2, y + TILE), str(row.level)[:15], fill="black")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out.with_name(f".{out.name}.tmp.png")
    sheet.save(tmp_out)
    tmp_out.replace(out)
    return f"wrote the contact sheet ({len(factors)} factors, {len(rows)} renders) to {out}"
