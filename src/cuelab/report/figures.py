"""Drawing for both pages: the style, pictures as PNG bytes and `data:` URIs (`Pictures`, which
draws each one once), and the pictures that belong to no probe kind: the IID confusion matrix and
the attribution examples. Each probe kind draws its own figure in its module, with these helpers.
(A leaf module: the probe kinds import it.)

matplotlib's object API on the Agg canvas (no pyplot: no display, no global state). PNGs are
written without the Software field, so the same results give the same bytes.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

if TYPE_CHECKING:
    from ..probes.estimate import Estimate

INK, MUTED, PAPER = "#1f2430", "#8a8f98", "#fbfbfa"  # PAPER: the page's background
ACCURACY, FLIP = "#2f6db5", "#d9822b"
CUE_A, CUE_B, NEITHER = "#2f6db5", "#d9822b", "#c8ccd2"
DPI = 130


def figure_png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, facecolor=PAPER, metadata={"Software": None})
    return buf.getvalue()


def pixels_png(pixels: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def png_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


class Pictures:
    """The pictures of a page, each drawn once, by name ("sweep-color", "confusion"): `uri` gives
    the page its `data:` URI, and `png` keeps the bytes for whoever saves them as files (the
    evaluation's figures/). With `extras`, pictures made only for those files are kept too."""

    def __init__(self, extras: bool = False):
        self.png: dict[str, bytes] = {}
        self.extras = extras

    @classmethod
    def drawn(cls, folder: Path, files: dict[str, str]) -> Pictures:
        """The pictures an evaluation already drew (its figures/, results.json's `files`): a page
        of the same results shows the same ones without drawing them again (seconds each)."""
        pictures = cls()
        for name, file in files.items():
            if (folder / file).is_file():
                pictures.png[name] = (folder / file).read_bytes()
        return pictures

    def uri(self, name: str, draw: Callable[[], Figure]) -> str:
        if name not in self.png:
            self.png[name] = figure_png(draw())
        return png_uri(self.png[name])

    def extra(self, name: str, make: Callable[[], bytes]) -> None:
        if self.extras:
            self.png[name] = make()


def style(ax) -> None:
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    for side in ("left", "bottom"):
        ax.spines[side].set_color(MUTED)
    ax.tick_params(colors=INK, labelsize=8)
    ax.grid(alpha=0.25, linewidth=0.6)


def values(estimates: list[Estimate], key: str = "value") -> np.ndarray:
    """One field of each estimate, NaN where undefined."""
    return np.array([np.nan if getattr(e, key) is None else getattr(e, key)
                     for e in estimates], dtype=float)


# --- IID -----------------------------------------------------------------------------------------

def confusion_figure(confusion: list[list[int]], classes: list[str]) -> Figure:
    cm = np.asarray(confusion)
    fig = Figure(figsize=(1.2 + 0.7 * len(classes), 1 + 0.7 * len(classes)),
                 layout="constrained")
    ax = fig.add_subplot()
    ax.imshow(cm, cmap="Blues")
    for (i, j), v in np.ndenumerate(cm):
        ax.text(j, i, str(v), ha="center", va="center",
                color="white" if v > cm.max() / 2 else "black")
    ax.set_xticks(range(len(classes)), classes, rotation=30)
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("IID test confusion")
    return fig


# --- attribution ---------------------------------------------------------------------------------

OUTLINE = np.array([80, 230, 120], dtype=np.uint8)  # green reads against the inferno maps


def scaled(m: np.ndarray) -> np.ndarray:
    """A map scaled to its own maximum (all zeros stay zeros)."""
    top = float(m.max())
    return m / top if top > 0 else np.zeros_like(m)


def heat(m: np.ndarray) -> np.ndarray:
    """A map as an RGB heat picture, scaled to its own maximum."""
    return (colormaps["inferno"](scaled(m))[..., :3] * 255).astype(np.uint8)


def _upscale(a: np.ndarray, s: int) -> np.ndarray:
    return a.repeat(s, 0).repeat(s, 1)


def _outline(mask: np.ndarray) -> np.ndarray:
    """The mask's boundary pixels (inside the mask, next to outside)."""
    m = np.pad(mask, 1, mode="edge")
    inner = m[1:-1, 1:-1] & m[:-2, 1:-1] & m[2:, 1:-1] & m[1:-1, :-2] & m[1:-1, 2:]
    return mask & ~inner


def example_tiles(image: np.ndarray, mask: np.ndarray, saliency: np.ndarray,
                  occlusion: np.ndarray, tile: int = 160) -> dict[str, np.ndarray]:
    """Four pictures of one test image, upscaled without smoothing: the image, the image with
    the exact mask's outline, and each attribution map over the dimmed image with the outline."""
    s = max(1, -(-tile // image.shape[0]))
    pic = _upscale(image, s)
    edge = _outline(_upscale(mask.astype(bool), s))
    out = {"image": pic}
    with_edge = pic.copy()
    with_edge[edge] = OUTLINE
    out["mask"] = with_edge
    grey = pic.mean(2, keepdims=True) * 0.55
    for kind, m in (("saliency", saliency), ("occlusion", occlusion)):
        w = _upscale(scaled(m), s)[..., None]
        hot = colormaps["inferno"](w[..., 0])[..., :3] * 255
        blend = (grey * (1 - 0.85 * w) + hot * 0.85 * w).clip(0, 255).astype(np.uint8)
        blend[edge] = OUTLINE
        out[kind] = blend
    return out


def examples_figure(rows: list[dict[str, np.ndarray]], captions: list[str]) -> Figure:
    """Examples' tiles as one figure (for MLflow): a row per example, its caption beside it."""
    names = list(rows[0])
    fig = Figure(figsize=(1.5 * len(names) + 1.6, 1.5 * len(rows) + 0.3), layout="constrained")
    axes = fig.subplots(len(rows), len(names), squeeze=False)
    for i, (tiles, caption) in enumerate(zip(rows, captions)):
        for j, name in enumerate(names):
            ax = axes[i, j]
            ax.imshow(tiles[name])
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(name, fontsize=8, color=INK)
        axes[i, 0].set_ylabel(caption, fontsize=7, color=INK, rotation=0, ha="right",
                              va="center")
    return fig
