"""Contact sheets: labelled rows of image tiles, saved atomically as one PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

LABEL_W, TEXT_H = 150, 14


def save_contact_sheet(rows: list[tuple[str, list[tuple[str, np.ndarray]]]], out: str | Path,
                       tile: int) -> Path:
    """rows: (row label, [(tile caption, uint8 RGB image), ...]); tiles scaled to `tile` px."""
    width = LABEL_W + max(len(tiles) for _, tiles in rows) * tile
    sheet = Image.new("RGB", (width, len(rows) * (tile + TEXT_H)), "white")
    draw = ImageDraw.Draw(sheet)
    for r, (label, tiles) in enumerate(rows):
        y = r * (tile + TEXT_H)
        draw.text((4, y + tile // 2), label, fill="black")
        for c, (caption, img) in enumerate(tiles):
            x = LABEL_W + c * tile
            sheet.paste(Image.fromarray(img).resize((tile, tile), Image.NEAREST), (x, y))
            draw.text((x + 2, y + tile), caption[:15], fill="black")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp.png")
    sheet.save(tmp)
    tmp.replace(out)
    return out
