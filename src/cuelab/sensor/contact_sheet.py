"""A contact sheet: one render through each sensor factor's levels, all else at identity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ..config import Experiment, load_experiment
from ..factors import REGISTRY, SENSOR_FACTOR_NAMES
from ..render import read_renders
from .camera import acquire

TILE, LABEL_W, TEXT_H = 128, 150, 14
# factors that act together are shown together
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
    width = LABEL_W + max(len(levels) for _, levels in rows) * TILE
    sheet = Image.new("RGB", (width, len(rows) * (TILE + TEXT_H)), "white")
    draw = ImageDraw.Draw(sheet)
    for r, (name, tiles) in enumerate(rows):
        y = r * (TILE + TEXT_H)
        draw.text((4, y + TILE // 2), name, fill="black")
        for c, (level, img) in enumerate(tiles):
            x = LABEL_W + c * TILE
            sheet.paste(Image.fromarray(img).resize((TILE, TILE), Image.NEAREST), (x, y))
            draw.text((x + 2, y + TILE), level if isinstance(level, str) else f"{level:g}",
                      fill="black")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp.png")
    sheet.save(tmp)
    tmp.replace(out)
    return f"wrote the sensor contact sheet ({len(rows)} factors) to {out}"
