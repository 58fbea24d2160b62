"""The trace report's pictures, drawn from results.json and the attribution maps, returned as
`data:` URIs so the page carries them inline.

matplotlib's object API on the Agg canvas (no pyplot: no display, no global state). PNGs are
written without the Software field, so the same results give the same bytes.
"""

from __future__ import annotations

import base64
import io

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import LinearSegmentedColormap
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter

from . import sentences as say

INK, MUTED, PAPER = "#1f2430", "#8a8f98", "#fbfbfa"  # PAPER: the page's background
ACCURACY, FLIP = "#2f6db5", "#d9822b"
CUE_A, CUE_B, NEITHER = "#2f6db5", "#d9822b", "#c8ccd2"
DPI = 130


def data_uri(fig: Figure) -> str:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, facecolor=PAPER, metadata={"Software": None})
    return png_uri(buf.getvalue())


def png_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def _style(ax) -> None:
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    for side in ("left", "bottom"):
        ax.spines[side].set_color(MUTED)
    ax.tick_params(colors=INK, labelsize=8)
    ax.grid(alpha=0.25, linewidth=0.6)


def _values(estimates: list[dict], key: str = "value") -> np.ndarray:
    return np.array([np.nan if e[key] is None else e[key] for e in estimates], dtype=float)


# --- sweeps --------------------------------------------------------------------------------------

def sweep_figure(sweep: dict) -> Figure:
    """Accuracy and flip rate at each level, with bands for their intervals; the reference level
    shaded when every class shares it."""
    f = sweep["factor"]
    levels = sweep["levels"]
    x = np.arange(len(levels))
    fig = Figure(figsize=(6.4, 2.9), layout="constrained")
    ax = fig.add_subplot()
    refs = set(sweep["reference"].values())
    ref = refs.pop() if len(refs) == 1 else None
    if ref in levels:
        i = levels.index(ref)
        ax.axvspan(i - 0.35, i + 0.35, color="#eceef2", zorder=0)
        ax.text(i, 1.03, "reference", ha="center", va="bottom", fontsize=7, color=MUTED)
    elif (at_reference := sweep["reference_accuracy"]["value"]) is not None:
        # each class has its own reference level: its accuracy is no point on the curve
        ax.axhline(at_reference, color=ACCURACY, linestyle=":", linewidth=1.2,
                   label="accuracy at each class's\nreference level")
    for key, color, label, style in (("accuracy", ACCURACY, "accuracy", "-"),
                                     ("flip_rate", FLIP, "flip rate vs reference", "--")):
        v, lo, hi = (_values(sweep[key], k) for k in ("value", "low", "high"))
        if key == "flip_rate" and ref in levels:  # the reference does not flip against itself
            v[levels.index(ref)] = lo[levels.index(ref)] = hi[levels.index(ref)] = 0.0
        ax.fill_between(x, lo, hi, color=color, alpha=0.18, linewidth=0)
        ax.plot(x, v, style, color=color, marker="o", markersize=4, linewidth=1.6, label=label)
    crowded = len(levels) > 5
    ax.set_xticks(x, [say.level(f, lv) for lv in levels], rotation=25 if crowded else 0,
                  ha="right" if crowded else "center")
    ax.set_xlim(-0.5, len(levels) - 0.5)
    ax.set_ylim(-0.02, 1.08)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax.set_xlabel(say.name(f), fontsize=9, color=INK)
    _style(ax)
    ax.legend(fontsize=8, frameon=False, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return fig


# --- conflicts -----------------------------------------------------------------------------------

def conflict_figure(conflict: dict, classes: list[str]) -> Figure:
    """Left: the preference for cue a in each (a's class, b's class) cell, with the decisions it
    rests on. Right: all conflict decisions split into follows a / follows b / neither."""
    a, b = conflict["factors"]
    k = len(classes)
    counts = np.asarray(conflict["decisions"], dtype=float).reshape(k, k, k)
    ia, ib = np.meshgrid(np.arange(k), np.arange(k), indexing="ij")
    won_a, won_b = counts[ia, ib, ia], counts[ia, ib, ib]
    matrix = np.array([[np.nan if v is None else v for v in row]
                       for row in conflict["preference_matrix"]], dtype=float)

    fig = Figure(figsize=(7.6, 0.9 + 0.55 * k + 0.6), layout="constrained")
    grid = fig.add_gridspec(1, 2, width_ratios=[1.25, 1])
    ax = fig.add_subplot(grid[0])
    # orange where b's cue wins, blue where a's does: the colours of the bars beside it
    cmap = LinearSegmentedColormap.from_list("cue", [CUE_B, "#f5f5f4", CUE_A]).with_extremes(
        bad="#eef0f3")
    ax.imshow(np.ma.masked_invalid(matrix), cmap=cmap, vmin=0, vmax=1)
    for (i, j), v in np.ndenumerate(matrix):
        n = int(won_a[i, j] + won_b[i, j])
        if i == j:
            ax.text(j, i, "–", ha="center", va="center", color=MUTED, fontsize=8)
        elif np.isnan(v):
            ax.text(j, i, f"n={n}", ha="center", va="center", color=MUTED, fontsize=7)
        else:
            ax.text(j, i, f"{v:.0%}\nn={n}", ha="center", va="center", fontsize=7,
                    color="white" if abs(v - 0.5) > 0.3 else INK)
    ax.set_xticks(range(k), classes, rotation=30, fontsize=8)
    ax.set_yticks(range(k), classes, fontsize=8)
    ax.set_ylabel(f"{say.name(a)} says", fontsize=9)
    ax.set_xlabel(f"{say.name(b)} says", fontsize=9)
    ax.set_title(f"decisions for {say.name(a)}'s class\n(of those for either cue)", fontsize=9)
    for side in ax.spines.values():
        side.set_visible(False)

    ax = fig.add_subplot(grid[1])
    parts = [("share_a", f"follows {say.name(a)}", CUE_A), ("share_b", f"follows {say.name(b)}",
                                                              CUE_B),
             ("share_other", "neither", NEITHER)]
    for y, (key, label, color) in enumerate(parts):
        e = conflict[key]
        v = e["value"] or 0.0
        ax.barh(y, v, color=color, height=0.6)
        if e["low"] is not None:
            ax.errorbar(v, y, xerr=[[v - e["low"]], [e["high"] - v]], color=INK, capsize=3,
                        linewidth=1)
        ax.text(max(v, e["high"] or 0) + 0.03, y, say.pct(v), va="center", fontsize=8)
    ax.set_yticks(range(len(parts)), [p[1] for p in parts], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.15)
    ax.xaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax.set_title(f"all {conflict['images']} conflict images", fontsize=9)
    _style(ax)
    ax.grid(axis="y", visible=False)
    return fig


# --- the background protocol -----------------------------------------------------------------

VARIANT_NAMES = {"original": "original", "only_fg": "object only\n(Only-FG)",
                 "mixed_same": "background of\nits class (Mixed-Same)",
                 "mixed_rand": "background of a\nrandom class (Mixed-Rand)"}


def background_figure(background: dict) -> Figure:
    variants = background["variants"]
    ests = [background["accuracy"][v] for v in variants]
    v, lo, hi = (_values(ests, k) for k in ("value", "low", "high"))
    fig = Figure(figsize=(6.4, 2.8), layout="constrained")
    ax = fig.add_subplot()
    x = np.arange(len(variants))
    colors = {"original": "#5b6472", "only_fg": "#a3aab5", "mixed_same": ACCURACY,
              "mixed_rand": FLIP}
    ax.bar(x, np.nan_to_num(v), color=[colors.get(n, MUTED) for n in variants], width=0.6)
    ax.errorbar(x, v, yerr=[v - lo, hi - v], fmt="none", color=INK, capsize=4, linewidth=1)
    for xi, vi, hii in zip(x, v, hi):
        if not np.isnan(vi):
            ax.text(xi, (hii if not np.isnan(hii) else vi) + 0.03, f"{vi:.0%}", ha="center",
                    fontsize=8)
    ax.set_xticks(x, [VARIANT_NAMES.get(n, n) for n in variants], fontsize=8)
    ax.set_ylim(0, 1.12)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax.set_ylabel("accuracy", fontsize=9)
    _style(ax)
    ax.grid(axis="x", visible=False)
    return fig


# --- attribution examples ----------------------------------------------------------------------

OUTLINE = np.array([80, 230, 120], dtype=np.uint8)  # green reads against the inferno maps


def _upscale(a: np.ndarray, s: int) -> np.ndarray:
    return a.repeat(s, 0).repeat(s, 1)


def _outline(mask: np.ndarray) -> np.ndarray:
    """The mask's boundary pixels (inside the mask, next to outside)."""
    m = np.pad(mask, 1, mode="edge")
    inner = m[1:-1, 1:-1] & m[:-2, 1:-1] & m[2:, 1:-1] & m[1:-1, :-2] & m[1:-1, 2:]
    return mask & ~inner


def example_tiles(image: np.ndarray, mask: np.ndarray, saliency: np.ndarray,
                  occlusion: np.ndarray, tile: int = 160) -> dict[str, str]:
    """Four pictures of one test image, upscaled without smoothing: the image, the image with
    the exact mask's outline, and each attribution map over the dimmed image with the outline."""
    from PIL import Image

    s = max(1, -(-tile // image.shape[0]))
    pic = _upscale(image, s)
    edge = _outline(_upscale(mask.astype(bool), s))
    out = {"image": pic}
    with_edge = pic.copy()
    with_edge[edge] = OUTLINE
    out["mask"] = with_edge
    grey = pic.mean(2, keepdims=True) * 0.55
    for kind, m in (("saliency", saliency), ("occlusion", occlusion)):
        top = float(m.max())
        w = _upscale(m / top if top > 0 else np.zeros_like(m), s)[..., None]
        heat = colormaps["inferno"](w[..., 0])[..., :3] * 255
        blend = (grey * (1 - 0.85 * w) + heat * 0.85 * w).clip(0, 255).astype(np.uint8)
        blend[edge] = OUTLINE
        out[kind] = blend
    uris = {}
    for kind, pixels in out.items():
        buf = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(pixels)).save(buf, format="PNG", optimize=True)
        uris[kind] = png_uri(buf.getvalue())
    return uris


def file_uri(path) -> str:
    return png_uri(path.read_bytes())
