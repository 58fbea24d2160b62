"""The shared render cache: each render kept once, under its `render_id`, for every run to take.

A scene's `render_id` names its picture (`cuelab.scenes.render_ids`); with the render settings
and the renderer's code it determines the pixels, so a render made for one experiment is the
render another one needs, whatever else the two differ in. A study's variants share their probes
and most training rows; a replicate, or a variant that changes only training, needs no render
at all. The render step takes what it can from here and adds what it renders.

Layout: <cache>/<key>/<id[:2]>/<id>.npz (rgb, mask, visible_fraction, device), where <key>
hashes the settings that change pixels (not `chunk_size`) and the renderer's fingerprint, so
another renderer or other settings never see these. Entries are written under a temporary name
and renamed: concurrent runs may write the same entry (the same bytes), and a killed one leaves
no half entry. An unreadable entry is a miss, rendered again and replaced.

Where: `CUELAB_RENDER_CACHE` (a folder, or `off`), else .cuelab/render-cache in the DVC project
the run belongs to (`cuelab.caches`), else no cache.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from ..atomic import npz_bytes, write_bytes
from ..caches import chosen_folder, ignore_in_git
from ..config import RenderSettings

ENV = "CUELAB_RENDER_CACHE"
NAME = "render-cache"
ARRAYS = ("rgb", "mask", "visible_fraction")


def default_folder(out: Path, choice: str | Path | None = None) -> Path | None:
    """Where the render step into `out` keeps its cache (None: no cache): `choice` (a folder, or
    "off"), else where the module says."""
    return chosen_folder(out, choice, ENV, NAME)


class RenderCache:
    def __init__(self, folder: str | Path, settings: RenderSettings, renderer: str):
        pixels = settings.model_dump(exclude={"chunk_size"})
        about = {"render_settings": pixels, "renderer": renderer}
        key = hashlib.sha256(json.dumps(about, sort_keys=True).encode()).hexdigest()[:16]
        self.root = Path(folder)
        self.folder = self.root / key
        self._about = about

    def path(self, render_id: str) -> Path:
        return self.folder / render_id[:2] / f"{render_id}.npz"

    def get_all(self, render_ids) -> list[tuple[dict[str, np.ndarray], str]] | None:
        """`get` of each, or None as soon as one is missing."""
        taken = []
        for render_id in render_ids:
            if (hit := self.get(render_id)) is None:
                return None
            taken.append(hit)
        return taken

    def get(self, render_id: str) -> tuple[dict[str, np.ndarray], str] | None:
        """The render's arrays and the device that made it, or None (absent or unreadable)."""
        try:
            with np.load(self.path(render_id), allow_pickle=False) as z:
                arrays = {key: z[key] for key in ARRAYS}
                arrays["visible_fraction"] = np.float32(arrays["visible_fraction"].item())
                return arrays, str(z["device"].item())
        except Exception:  # absent, cut off, foreign: a miss, rendered again
            return None

    def put(self, render_id: str, arrays: dict[str, np.ndarray], device: str) -> None:
        if not self.folder.is_dir():
            self._create()
        write_bytes(self.path(render_id), npz_bytes(
            {**{key: arrays[key] for key in ARRAYS}, "device": np.array(device)}))

    def _create(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        ignore_in_git(self.root)
        write_bytes(self.folder / "about.json", json.dumps(self._about, indent=1).encode())

    def __len__(self) -> int:
        return sum(1 for _ in self.folder.glob("*/*.npz")) if self.folder.is_dir() else 0

    def __str__(self) -> str:
        return str(self.root)
