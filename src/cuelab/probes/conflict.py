"""Cue conflicts (Geirhos): images where factor a indicates one class and factor b another.

The preference for a is the share of decisions for a's class among the decisions for a's or b's
class; every decision is also counted by what each cue said. Intervals resample images.
Everything about the kind is here: its result, statistics, importance evidence, metrics, and its
part of the page.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.colors import LinearSegmentedColormap
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter

from ..config import Experiment
from ..report import words as say
from ..report.figures import CUE_A, CUE_B, INK, MUTED, NEITHER, style
from ..report.markup import PageContext, anchor, esc, figure, prose
from ..scenes import conflict_key
from .base import EVIDENCE, WON, Evidence, ProbeKind, ProbeRef
from .estimate import Bootstrap, Estimate, Strict


class ConflictResult(Strict):
    factors: tuple[str, str]            # (a, b)
    images: int
    preference: Estimate                # decisions for a's class / decisions for a's or b's
    share_a: Estimate                   # shares of all decisions: a's class,
    share_b: Estimate                   # b's class,
    share_other: Estimate               # neither
    decisions: list[list[list[int]]]    # counts[class a said][class b said][class chosen]
    preference_matrix: list[list[float | None]]  # the preference per (a's class, b's class)


# --- statistics ----------------------------------------------------------------------------------

def cue_preference(table: pd.DataFrame, a: str, b: str, k: int,
                   boot: Bootstrap) -> ConflictResult:
    """On conflict images where cue a says class_a and cue b says class_b: the fraction of
    decisions for class_a among the decisions for class_a or class_b (the preference for a), the
    share of all decisions each cue wins, and every decision counted by what each cue said."""
    key = conflict_key(a, b)
    rows = table[(table.split == "conflict") & (table.conflict == key)]
    class_a, class_b = rows.class_a.to_numpy(np.int64), rows.class_b.to_numpy(np.int64)
    pred = rows.pred.to_numpy(np.int64)
    follows_a, follows_b = (pred == class_a).astype(float), (pred == class_b).astype(float)
    counts = np.bincount((class_a * k + class_b) * k + pred, minlength=k ** 3).reshape(k, k, k)
    ia, ib = np.meshgrid(np.arange(k), np.arange(k), indexing="ij")
    won_a, won_b = counts[ia, ib, ia], counts[ia, ib, ib]
    with np.errstate(invalid="ignore"):
        cell = np.where(ia == ib, np.nan, won_a / (won_a + won_b))
    name = f"conflict:{key}"
    return ConflictResult(
        factors=(a, b), images=len(rows),
        preference=boot.ratio(name, follows_a, follows_a + follows_b),
        share_a=boot.mean(name, follows_a),
        share_b=boot.mean(name, follows_b),
        share_other=boot.mean(name, 1 - follows_a - follows_b),
        decisions=counts.tolist(),
        preference_matrix=[[None if np.isnan(x) else float(x) for x in r] for r in cell])


def statistics(table: pd.DataFrame, exp: Experiment,
               boot: Bootstrap) -> dict[str, ConflictResult]:
    k = len(exp.classes)
    return {conflict_key(*c.factors): cue_preference(table, *c.factors, k, boot)
            for c in exp.conflicts}


# --- what the rest of cuelab takes from a conflict -----------------------------------------------

def evidence(key: str, c: ConflictResult) -> list[tuple[str, Evidence]]:
    """For each factor, the share of all conflict decisions that follow its cue."""
    a, b = c.factors
    return [(f, Evidence(ref=ProbeRef(kind="conflict", key=key, measure=measure),
                         label="conflict share", detail=f"{f} against {other}",
                         estimate=getattr(c, measure)))
            for f, other, measure in ((a, b, "share_a"), (b, a, "share_b"))]


def metrics(conflicts: dict[str, ConflictResult]) -> dict[str, dict]:
    return {"preference": {k: c.preference.metrics("preference") for k, c in conflicts.items()}}


def winner(conflict: ConflictResult) -> str | None:
    """The cue the model clearly prefers (interval above 50%), if any."""
    a, b = conflict.factors
    p = conflict.preference
    if p.low is not None and p.low > 0.5:
        return a
    if p.high is not None and p.high < 0.5:
        return b
    return None


def claim(conflict: ConflictResult, factor: str) -> int | None:
    """A conflict speaks for both its factors, so the verdict says it once, by its winner."""
    won = winner(conflict)
    return EVIDENCE if won is None else WON if won == factor else None


# --- in words and pictures -----------------------------------------------------------------------

def sentence(conflict: ConflictResult, factor: str | None = None,
             label_factor: str | None = None) -> str:
    """Which cue the model follows on images where two cues disagree, from `factor`'s side
    (default: the conflict's first factor)."""
    a, b = conflict.factors
    kind = f"{say.name(a)}-vs-{say.name(b)} conflict images"
    preference = conflict.preference
    if factor == b:
        a, b, preference = b, a, say.complement(preference)
    images = conflict.images
    if images == 0:
        return (f"no {kind} were made, so nothing can be said about {say.name(a)} against "
                f"{say.name(b)}")
    share_other = conflict.share_other.value or 0.0
    decided = round((1 - share_other) * images)
    if not say.defined(preference):
        return (f"none of the {images} {kind} was decided for the class either cue indicates: "
                "the preference is undefined")
    if decided < say.FEW_DECISIONS:
        return (f"too few {kind} to tell: only {decided} of {images} were decided for the class "
                f"of either cue ({say.name(a)} won {say.pct(preference.value)} of those)")
    p = say.estimate(preference)
    if preference.low is not None and preference.low > 0.5:
        text = f"the model follows {say.name(a)} over {say.name(b)} in {p} of {kind}"
    elif preference.high is not None and preference.high < 0.5:
        text = (f"the model follows {say.name(b)} over {say.name(a)} in "
                f"{say.estimate(say.complement(preference))} of {kind}")
    else:
        text = (f"no clear preference between {say.name(a)} and {say.name(b)}: the model "
                f"follows {say.name(a)} in {p} of {kind}, an interval that includes 50%")
    if share_other > say.NOTABLE:
        text += (f" (counting the {decided} of {images} images decided for either cue; "
                 f"{say.pct(share_other)} went to a class neither cue indicates)")
    return text + say.width_caveat(preference, "images")


def conflict_figure(conflict: ConflictResult, classes: list[str]) -> Figure:
    """Left: the preference for cue a in each (a's class, b's class) cell, with the decisions it
    rests on. Right: all conflict decisions split into follows a / follows b / neither."""
    k = len(classes)
    fig = Figure(figsize=(7.6, 0.9 + 0.55 * k + 0.6), layout="constrained")
    grid = fig.add_gridspec(1, 2, width_ratios=[1.25, 1])
    _matrix(fig.add_subplot(grid[0]), conflict, classes)
    _shares(fig.add_subplot(grid[1]), conflict)
    return fig


def _matrix(ax, conflict: ConflictResult, classes: list[str]) -> None:
    a, b = conflict.factors
    k = len(classes)
    counts = np.asarray(conflict.decisions, dtype=float).reshape(k, k, k)
    ia, ib = np.meshgrid(np.arange(k), np.arange(k), indexing="ij")
    won_a, won_b = counts[ia, ib, ia], counts[ia, ib, ib]
    matrix = np.array([[np.nan if v is None else v for v in row]
                       for row in conflict.preference_matrix], dtype=float)
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


def _shares(ax, conflict: ConflictResult) -> None:
    a, b = conflict.factors
    parts = [(conflict.share_a, f"follows {say.name(a)}", CUE_A),
             (conflict.share_b, f"follows {say.name(b)}", CUE_B),
             (conflict.share_other, "neither", NEITHER)]
    for y, (e, label, color) in enumerate(parts):
        v = e.value or 0.0
        ax.barh(y, v, color=color, height=0.6)
        if e.low is not None:
            ax.errorbar(v, y, xerr=[[v - e.low], [e.high - v]], color=INK, capsize=3,
                        linewidth=1)
        ax.text(max(v, e.high or 0) + 0.03, y, say.pct(v), va="center", fontsize=8)
    ax.set_yticks(range(len(parts)), [p[1] for p in parts], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.15)
    ax.xaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax.set_title(f"all {conflict.images} conflict images", fontsize=9)
    style(ax)
    ax.grid(axis="y", visible=False)


def section(factor: str, key: str, conflict: ConflictResult, page: PageContext) -> str:
    """The conflict from `factor`'s side; its figure under the factor whose section comes
    first."""
    a, b = conflict.factors
    other = b if factor == a else a
    owner = page.first(conflict.factors)
    head = f"Conflict with {esc(say.name(other))} <small>{conflict.images} images</small>"
    text = f"<p>{prose(sentence(conflict, factor))}</p>"
    if conflict.images == 0:
        return f"<h3>{head}</h3>{text}"
    if factor != owner:
        return (f"<h3>{head}</h3>{text}<p class='note'>The decision matrix is under "
                f"<a href='#{anchor(owner)}'>{esc(say.title(owner))}</a>.</p>")
    caption = (f"Each cell: images where {esc(say.name(a))} says the row's class and "
               f"{esc(say.name(b))} the column's; the colour and percentage are the decisions "
               f"for {esc(say.name(a))}'s class among those for either (n of them). "
               f"Preference for {esc(say.name(a))} overall: "
               f"{esc(say.estimate(conflict.preference))}.")
    uri = page.pictures.uri(KIND.figure_name(key),
                            lambda: conflict_figure(conflict, page.classes))
    return f"<h3>{head}</h3>{text}" + figure(uri, f"{a} vs {b} decision matrix", caption)


def describe(exp: Experiment) -> list[str]:
    return [f"conflict {c.factors[0]} vs {c.factors[1]}: {c.images} images"
            for c in exp.conflicts]


KIND = ProbeKind(
    name="conflict", result_model=ConflictResult, statistics=statistics,
    factors=lambda c: list(c.factors), evidence=evidence, metrics=metrics, claim=claim,
    sentence=sentence, section=section, describe=describe,
    importance="the share of conflict decisions that follow its cue",
    glossary=(("Cue preference", "On conflict images, where one factor indicates one class "
               "and another\nfactor a different class: the share of decisions for the first "
               "factor's class among the\ndecisions for either."),))
