"""The evaluation's figures (PNG), drawn from the results dictionary: what MLflow shows, what the
summary page embeds, and what a person looks at first. matplotlib's object API, no pyplot, so
no display and no global state."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure


def _est(e: dict, key: str = "value") -> float:
    return np.nan if e is None or e[key] is None else e[key]


def _errorbars(ax, x, ests: list[dict], **kw) -> None:
    v = np.array([_est(e) for e in ests])
    lo = np.array([_est(e, "low") for e in ests])
    hi = np.array([_est(e, "high") for e in ests])
    ax.errorbar(x, v, yerr=[v - lo, hi - v], capsize=3, marker="o", **kw)


def sweeps_figure(sweeps: dict) -> Figure:
    """Accuracy and flip rate against each swept factor's levels, with their intervals."""
    n = len(sweeps)
    cols = min(n, 3)
    rows = -(-n // cols)
    fig = Figure(figsize=(4.2 * cols, 3.2 * rows), layout="constrained")
    for i, (name, s) in enumerate(sweeps.items()):
        ax = fig.add_subplot(rows, cols, i + 1)
        x = np.arange(len(s["levels"]))
        _errorbars(ax, x, s["accuracy"], label="accuracy")
        _errorbars(ax, x + 0.08, s["flip_rate"], label="flip rate", linestyle="--")
        ax.set_xticks(x, s["levels"], rotation=30 if len(s["levels"]) > 4 else 0)
        refs = set(s["reference"].values())
        ref = refs.pop() if len(refs) == 1 else "each class's paired level"
        ax.set_title(f"{name} (reference: {ref})", fontsize=9)
        ax.set_ylim(-0.05, 1.05)
        ax.grid(alpha=0.3)
        if i == 0:
            ax.legend(fontsize=8)
    fig.suptitle("Sweeps: accuracy and flip rate against the reference level")
    return fig


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


def conflicts_figure(conflicts: dict) -> Figure:
    """Per conflict: the share of decisions following each cue, or neither."""
    fig = Figure(figsize=(7, 1.2 + 0.6 * len(conflicts)), layout="constrained")
    ax = fig.add_subplot()
    names = list(conflicts)
    left = np.zeros(len(names))
    for part, color in (("share_a", "tab:blue"), ("share_b", "tab:orange"),
                        ("share_other", "tab:gray")):
        widths = np.array([_est(conflicts[k][part]) for k in names])
        ax.barh(names, widths, left=left, color=color,
                label={"share_a": "follows a", "share_b": "follows b",
                       "share_other": "neither"}[part])
        left += np.nan_to_num(widths)
    for y, k in enumerate(names):
        p = conflicts[k]["preference"]
        if p["value"] is not None:
            ax.text(1.02, y, f"preference for a\n{p['value']:.2f} [{_est(p, 'low'):.2f}, "
                    f"{_est(p, 'high'):.2f}]", va="center", fontsize=8)
    ax.set_xlim(0, 1.3)
    ax.set_xticks(np.linspace(0, 1, 6))
    ax.set_xlabel("share of conflict decisions (conflict: a_vs_b)")
    ax.legend(fontsize=8, loc="lower center", bbox_to_anchor=(0.4, 1.0), ncol=3, frameon=False)
    return fig


def background_figure(background: dict) -> Figure:
    fig = Figure(figsize=(5, 3), layout="constrained")
    ax = fig.add_subplot()
    variants = background["variants"]
    _errorbars(ax, np.arange(len(variants)), [background["accuracy"][v] for v in variants],
               linestyle="none")
    ax.set_xticks(range(len(variants)), variants)
    ax.set_ylim(-0.05, 1.05)
    ax.set_ylabel("accuracy")
    gap = background.get("gap")
    ax.set_title("Background protocol" + (f": gap {gap['value']:.2f}" if gap and
                                          gap["value"] is not None else ""))
    ax.grid(alpha=0.3)
    return fig


def importance_figure(ranking: list[dict]) -> Figure:
    fig = Figure(figsize=(6, 0.8 + 0.35 * max(len(ranking), 1)), layout="constrained")
    ax = fig.add_subplot()
    names = [r["factor"] for r in ranking][::-1]
    v = np.array([r["importance"] for r in ranking][::-1])
    lo = np.array([_est(r, "low") for r in ranking][::-1])
    hi = np.array([_est(r, "high") for r in ranking][::-1])
    ax.barh(names, v, xerr=[v - lo, hi - v], capsize=3, color="tab:purple")
    ax.set_xlabel("importance: largest share of decisions the factor moves")
    ax.set_xlim(min(0, np.nanmin(lo, initial=0)), 1)
    ax.grid(alpha=0.3, axis="x")
    return fig


def attribution_figure(images, masks, saliency, occlusion, titles: list[str]) -> Figure:
    """Examples, one per column: image, mask, saliency, occlusion."""
    n = len(images)
    fig = Figure(figsize=(1.6 * n, 6.6), layout="constrained")
    for j in range(n):
        for i, (pic, cmap) in enumerate(((images[j], None), (masks[j], "gray"),
                                         (saliency[j], "inferno"), (occlusion[j], "inferno"))):
            ax = fig.add_subplot(4, n, i * n + j + 1)
            ax.imshow(pic, cmap=cmap)
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(["image", "mask", "saliency", "occlusion"][i])
            if i == 0:
                ax.set_title(titles[j], fontsize=7)
    return fig


def save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path
