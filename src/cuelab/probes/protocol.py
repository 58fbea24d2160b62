"""The background protocol (ImageNet-9 backgrounds challenge): the same foreground scenes as
Original, Only-FG (the object alone), Mixed-Same (a background drawn for the object's own class)
and Mixed-Rand (a background drawn for a random class).

Measures accuracy on each variant, the background gap acc(mixed_same) - acc(mixed_rand) and the
Only-FG drop acc(original) - acc(only_fg). Intervals resample base scenes, keeping each one's
variants together. The experiment has at most one protocol: its key is "background".
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter

from ..config import Experiment
from ..errors import CuelabError
from ..report import words as say
from ..report.figures import ACCURACY, FLIP, INK, MUTED, style, values
from ..report.markup import PageContext, estimate_cell, esc, figure, prose
from .base import MADE_FOR, Evidence, ProbeKind, ProbeRef
from .estimate import Bootstrap, Estimate, Strict

KEY = "background"  # the one protocol's key; also the factor it speaks for
DIFFERENCES = {  # measure: (higher variant, lower variant, label, detail)
    "gap": ("mixed_same", "mixed_rand", "background gap", "mixed_same - mixed_rand"),
    "only_fg_drop": ("original", "only_fg", "only-fg drop", "original - only_fg"),
}


class ProtocolResult(Strict):
    variants: list[str]
    base_scenes: int
    accuracy: dict[str, Estimate]       # per variant
    gap: Estimate | None = None         # mixed_same - mixed_rand, when both are configured
    only_fg_drop: Estimate | None = None  # original - only_fg, likewise


# --- statistics ----------------------------------------------------------------------------------

def background_protocol(table: pd.DataFrame, boot: Bootstrap) -> ProtocolResult:
    """Accuracy on each variant of the same foreground scenes, the background gap
    acc(mixed_same) - acc(mixed_rand) and the Only-FG drop acc(original) - acc(only_fg).
    Intervals resample base scenes, keeping each one's variants together."""
    rows = table[table.split == "protocol"]
    wide = rows.assign(correct=(rows.pred == rows.label).astype(float)).pivot(
        index="base_id", columns="variant", values="correct").sort_index()
    if wide.isna().any().any():
        raise CuelabError("background protocol: every base scene needs every variant; some "
                          "are missing from the predictions")
    variants = list(dict.fromkeys(rows.variant))
    correct = wide[variants].to_numpy()
    n = len(correct)
    mean = lambda w: w @ correct / w.sum(1, keepdims=True)  # noqa: E731
    differences = {}
    for measure, (hi, lo, _, _) in DIFFERENCES.items():
        if hi in variants and lo in variants:
            i, j = variants.index(hi), variants.index(lo)
            differences[measure] = boot.estimate("protocol", n,
                                                 lambda w: mean(w)[:, i] - mean(w)[:, j])
    return ProtocolResult(
        variants=variants, base_scenes=n,
        accuracy=dict(zip(variants, boot.estimates("protocol", n, mean, len(variants)))),
        **differences)


def statistics(table: pd.DataFrame, exp: Experiment,
               boot: Bootstrap) -> dict[str, ProtocolResult]:
    if exp.background_protocol is None:
        return {}
    return {KEY: background_protocol(table, boot)}


# --- what the rest of cuelab takes from the protocol ---------------------------------------------

def evidence(key: str, p: ProtocolResult) -> list[tuple[str, Evidence]]:
    """The background gap and the Only-FG drop (decisions lost), for the background."""
    return [(KEY, Evidence(ref=ProbeRef(kind="protocol", key=key, measure=measure),
                           label=label, detail=detail, estimate=getattr(p, measure)))
            for measure, (_, _, label, detail) in DIFFERENCES.items()
            if getattr(p, measure) is not None]


def metrics(protocols: dict[str, ProtocolResult]) -> dict[str, dict]:
    p = protocols.get(KEY)
    if p is None:
        return {}
    out = {v: a.value for v, a in p.accuracy.items() if a.value is not None}
    for measure in DIFFERENCES:
        if getattr(p, measure) is not None:
            out.update(getattr(p, measure).metrics(measure))
    return {"background": out}


# --- in words and pictures -----------------------------------------------------------------------

def sentence(p: ProtocolResult, factor: str | None = None,
             label_factor: str | None = None) -> str:
    """The background gap (Mixed-Same vs Mixed-Rand) and the Only-FG drop, in words."""
    return "; ".join(part for part in (_gap_clause(p), _only_fg_clause(p)) if part)


def _gap_clause(p: ProtocolResult) -> str:
    gap = p.gap
    how = say.direction(gap)
    if how == "undefined":
        return "the protocol lacks mixed_same or mixed_rand, so there is no background gap"
    same, rand = say.pct(p.accuracy["mixed_same"].value), say.pct(p.accuracy["mixed_rand"].value)
    swap = "when the background is drawn for a random class instead of the object's own"
    g = say.estimate(gap)
    return {
        "up": f"accuracy falls from {same} to {rand} {swap} (gap {g})",
        "down": f"accuracy rises from {same} to {rand} {swap} (gap {g}): backgrounds of the "
                "object's own class do not help it",
        "none": f"accuracy barely changes {swap} ({same} against {rand}; gap {g}): no sign the "
                "model reads the background",
        "unclear": f"accuracy goes from {same} to {rand} {swap}, but that gap of {g} could be "
                   "chance",
    }[how] + say.width_caveat(gap, "base scenes")


def _only_fg_clause(p: ProtocolResult) -> str:
    drop = p.only_fg_drop
    how = say.direction(drop)
    if how == "undefined":
        return ""
    original, only_fg = say.pct(p.accuracy["original"].value), say.pct(p.accuracy["only_fg"].value)
    return "with the object alone on a blank background (Only-FG) accuracy " + {
        "up": f"falls from {original} to {only_fg} (a drop of {say.estimate(drop)})",
        "down": f"rises from {original} to {only_fg} (a drop of {say.estimate(drop)})",
        "none": f"stays about the same ({original} against {only_fg})",
        "unclear": f"goes from {original} to {only_fg}, a drop of {say.estimate(drop)} that "
                   "could be chance",
    }[how]


VARIANT_NAMES = {"original": "original", "only_fg": "object only\n(Only-FG)",
                 "mixed_same": "background of\nits class (Mixed-Same)",
                 "mixed_rand": "background of a\nrandom class (Mixed-Rand)"}


def protocol_figure(p: ProtocolResult) -> Figure:
    """Accuracy on each variant, with its interval."""
    variants = p.variants
    v, lo, hi = (values([p.accuracy[x] for x in variants], k) for k in ("value", "low", "high"))
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
    style(ax)
    ax.grid(axis="x", visible=False)
    return fig


def section(factor: str, key: str, p: ProtocolResult, page: PageContext) -> str:
    rows = "".join(f"<tr><td>{esc(v)}</td><td class='num'>{estimate_cell(a)}</td></tr>"
                   for v, a in p.accuracy.items())
    names = {"gap": "gap (mixed_same − mixed_rand)",
             "only_fg_drop": "Only-FG drop (original − only_fg)"}
    extra = "".join(f"<tr><td><b>{names[m]}</b></td><td class='num'>"
                    f"{estimate_cell(getattr(p, m))}</td></tr>"
                    for m in DIFFERENCES if getattr(p, m) is not None)
    uri = page.pictures.uri(KIND.figure_name(key), lambda: protocol_figure(p))
    return f"""<h3>Background protocol <small>{p.base_scenes} base scenes ×
{len(p.variants)} variants</small></h3>
<p>{prose(sentence(p))}</p>
{figure(uri, "background protocol")}
<details><summary>The numbers</summary><table class="numbers"><tbody>{rows}{extra}</tbody>
</table></details>"""


def describe(exp: Experiment) -> list[str]:
    bp = exp.background_protocol
    if bp is None:
        return []
    return [f"background protocol: {bp.base_scenes} base scenes × {', '.join(bp.variants)}"]


KIND = ProbeKind(
    name="protocol", result_model=ProtocolResult, statistics=statistics,
    factors=lambda p: [KEY], evidence=evidence, metrics=metrics,
    claim=lambda p, factor: MADE_FOR,
    sentence=sentence, section=section, describe=describe,
    importance="for the background the background gap (mixed_same - mixed_rand) and the "
               "Only-FG drop (original - only_fg)",
    glossary=(("Background gap", "Accuracy with backgrounds drawn for the object's own class\n"
               "(Mixed-Same) minus accuracy with backgrounds drawn for a random class "
               "(Mixed-Rand), as in the\nImageNet-9 backgrounds challenge."),))
