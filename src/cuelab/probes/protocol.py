"""The background protocol (ImageNet-9 backgrounds challenge): the same foreground scenes as
Original; Only-FG (the object alone on black) and on a neutral training backdrop; Only-BG-B,
Only-BG-T and No-FG (the object blacked out, filled with background, removed: from the exact
masks); Mixed-Same, Mixed-Rand and Mixed-Next (a background drawn for the object's own class, a
random class, the next class); and the worst case (every training background).

Reliance: the background gap acc(mixed_same) - acc(mixed_rand), every backdrop a training one.
Robustness: the Only-FG drop on black, a backdrop training never had. Intervals resample models,
then base scenes, keeping each one's variants together. The experiment has at most one protocol:
its key is "background".
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
from ..scenes import in_training
from .base import MADE_FOR, Evidence, Fragility, ProbeKind, ProbeRef, by_model
from .estimate import Bootstrap, Estimate, Strict, total

KEY = "background"  # the one protocol's key; also the factor it speaks for
WORST_CASE = "worst_case"  # rows: the base scene on each training background (`level`)
DIFFERENCES = {  # measure: (higher variant, lower variant, label, detail)
    "gap": ("mixed_same", "mixed_rand", "background gap", "mixed_same - mixed_rand"),
    "only_fg_drop": ("original", "only_fg", "only-fg drop", "original - only_fg"),
    "only_fg_neutral_drop": ("original", "only_fg_neutral", "only-fg drop on a neutral "
                             "backdrop", "original - only_fg_neutral"),
}


class ProtocolResult(Strict):
    variants: list[str]
    base_scenes: int
    models: int
    chance: float                        # accuracy of a model choosing at random
    neutral: str | None = None           # the backdrop of only_fg_neutral
    black_in_training: bool = False      # did training images have the black backdrop?
    accuracy: dict[str, Estimate]        # per variant (worst_case: right on every background)
    gap: Estimate | None = None          # mixed_same - mixed_rand (reliance)
    only_fg_drop: Estimate | None = None           # original - only_fg (robustness)
    only_fg_neutral_drop: Estimate | None = None   # original - only_fg_neutral
    worst_case_backgrounds: list[str] = []


# --- statistics ----------------------------------------------------------------------------------

def background_protocol(table: pd.DataFrame, exp: Experiment,
                        boot: Bootstrap) -> ProtocolResult:
    """Accuracy on each variant of the same foreground scenes; the background gap
    acc(mixed_same) - acc(mixed_rand), the Only-FG drops, and the worst case: the share of base
    scenes decided right on every training background. Intervals resample models, then base
    scenes (keeping each one's variants together)."""
    rows = table[table.split == "protocol"].assign(correct=lambda t: (t.pred == t.label) * 1.0)
    variants = list(dict.fromkeys(rows.variant))
    plain = [v for v in variants if v != WORST_CASE]
    correct = by_model(rows[rows.variant != WORST_CASE], "base_id", "variant", "correct", plain)
    worst = rows[rows.variant == WORST_CASE]
    backgrounds = list(dict.fromkeys(worst.level))
    n_expected = rows.base_id.nunique()
    if np.isnan(correct).any() or correct.shape[1] != n_expected:
        raise CuelabError("background protocol: every base scene needs every variant; some "
                          "are missing from the predictions")
    models, n, _ = correct.shape
    key = "protocol"
    mean = lambda w: total(w, correct) / w.sum(1)[:, None, None]  # noqa: E731
    accuracy = dict(zip(plain, boot.intervals(key, n, models, mean, len(plain))))
    if backgrounds:
        every = by_model(worst, "base_id", "level", "correct", backgrounds)
        accuracy[WORST_CASE] = boot.mean(key, every.min(-1))
    differences = {}
    for measure, (hi, lo, _, _) in DIFFERENCES.items():
        if hi in plain and lo in plain:
            d = correct[..., plain.index(hi)] - correct[..., plain.index(lo)]
            differences[measure] = boot.mean(key, d)
    neutral = rows[rows.variant == "only_fg_neutral"].background
    return ProtocolResult(
        variants=variants, base_scenes=n, models=models, chance=round(1 / len(exp.classes), 6),
        neutral=str(neutral.iloc[0]) if len(neutral) else None,
        black_in_training=in_training(exp, "background", "black"),
        accuracy=accuracy, worst_case_backgrounds=backgrounds, **differences)


def statistics(table: pd.DataFrame, exp: Experiment,
               boot: Bootstrap) -> dict[str, ProtocolResult]:
    if exp.background_protocol is None:
        return {}
    return {KEY: background_protocol(table, exp, boot)}


# --- what the rest of cuelab takes from the protocol ---------------------------------------------

def reliance(key: str, p: ProtocolResult) -> list[tuple[str, Evidence]]:
    """The background gap: backgrounds the training distribution pairs with the object's class
    against backgrounds drawn for a random class, every one a training background."""
    if p.gap is None:
        return []
    return [(KEY, Evidence(ref=ProbeRef(kind="protocol", key=key, measure="gap"),
                           label="background gap", detail="mixed_same - mixed_rand",
                           estimate=p.gap))]


def robustness(key: str, p: ProtocolResult) -> list[Fragility]:
    """The object alone on black, a backdrop training never had."""
    if p.only_fg_drop is None or p.black_in_training:
        return []
    return [Fragility(ref=ProbeRef(kind="protocol", key=key, measure="only_fg_drop"),
                      factor=KEY, condition="the object alone on black (Only-FG)",
                      why="training never had a black backdrop",
                      accuracy=p.accuracy["only_fg"], baseline=p.accuracy["original"],
                      drop=p.only_fg_drop)]


def metrics(protocols: dict[str, ProtocolResult]) -> dict[str, dict]:
    p = protocols.get(KEY)
    if p is None:
        return {}
    out = {v: a.value for v, a in p.accuracy.items() if a.value is not None}
    out["chance"] = p.chance
    for measure in DIFFERENCES:
        if getattr(p, measure) is not None:
            out.update(getattr(p, measure).metrics(measure))
    return {"background": out}


# --- in words and pictures -----------------------------------------------------------------------

def sentence(p: ProtocolResult, factor: str | None = None,
             label_factor: str | None = None) -> str:
    """The background gap (reliance), then the object alone and the background alone, the
    worst case over backgrounds, and the object alone on black (robustness), in words."""
    return "; ".join(part for part in (_gap_clause(p), _only_fg_clause(p), _only_bg_clause(p),
                                       _worst_clause(p), _black_clause(p)) if part)


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
    drop = p.only_fg_neutral_drop
    if not say.defined(drop):
        return ""
    original = say.pct(p.accuracy["original"].value)
    alone = say.pct(p.accuracy["only_fg_neutral"].value)
    where = f"the object alone on {p.neutral}, a training backdrop paired with no class"
    return {
        "up": f"{where}, is classified less well ({alone} against {original} in the original; "
              f"a drop of {say.estimate(drop)})",
        "down": f"{where}, is classified better ({alone} against {original})",
        "none": f"{where}, is classified as well as in the original ({alone} against "
                f"{original})",
        "unclear": f"{where}, goes from {original} to {alone}, a drop of "
                   f"{say.estimate(drop)} that could be chance",
    }[say.direction(drop)]


def _only_bg_clause(p: ProtocolResult) -> str:
    shown = [(v, p.accuracy[v]) for v in ("only_bg_b", "only_bg_t", "no_fg") if v in p.accuracy]
    if not shown:
        return ""
    listed = ", ".join(f"{say.estimate(e)} {SHORT[v]}" for v, e in shown)
    above = [v for v, e in shown if e.low is not None and e.low > p.chance]
    verdict = ("above chance: the background alone carries what the model uses" if above
               else "no better than chance")
    return (f"with the object gone the model is right in {listed} (chance "
            f"{say.pct(p.chance)}): {verdict}")


def _worst_clause(p: ProtocolResult) -> str:
    e = p.accuracy.get(WORST_CASE)
    if not say.defined(e):
        return ""
    return (f"{say.estimate(e)} of the base scenes are classified right on every one of the "
            f"{len(p.worst_case_backgrounds)} training backgrounds (the worst case)")


def _black_clause(p: ProtocolResult) -> str:
    drop = p.only_fg_drop
    if not say.defined(drop):
        return ""
    original, only_fg = say.pct(p.accuracy["original"].value), say.pct(p.accuracy["only_fg"].value)
    unseen = "" if p.black_in_training else ", a backdrop no training image had"
    return (f"on black{unseen} (Only-FG), accuracy goes from {original} to {only_fg} "
            f"(robustness, not reliance: drop {say.estimate(drop)})")


SHORT = {"only_bg_b": "with it blacked out", "only_bg_t": "with it filled with background",
         "no_fg": "with it removed"}
VARIANT_NAMES = {"original": "original", "only_fg": "object on\nblack (Only-FG)",
                 "only_fg_neutral": "object on a\nneutral backdrop",
                 "only_bg_b": "object blacked\nout (Only-BG-B)",
                 "only_bg_t": "object filled\n(Only-BG-T)", "no_fg": "object removed\n(No-FG)",
                 "mixed_same": "background of\nits class\n(Mixed-Same)",
                 "mixed_rand": "background of a\nrandom class\n(Mixed-Rand)",
                 "mixed_next": "background of\nthe next class\n(Mixed-Next)",
                 WORST_CASE: "right on every\nbackground\n(worst case)"}
COLORS = {"original": "#5b6472", "mixed_same": ACCURACY, "mixed_rand": FLIP,
          "mixed_next": FLIP, WORST_CASE: "#7a4fa0"}


def protocol_figure(p: ProtocolResult) -> Figure:
    """Accuracy on each variant (a bar each, top to bottom), with its interval, each model's
    value as dots, and chance."""
    names = list(p.accuracy)
    v, lo, hi = (values([p.accuracy[x] for x in names], k) for k in ("value", "low", "high"))
    fig = Figure(figsize=(6.8, 0.9 + 0.42 * len(names)), layout="constrained")
    ax = fig.add_subplot()
    y = np.arange(len(names))
    ax.barh(y, np.nan_to_num(v), color=[COLORS.get(n, "#a3aab5") for n in names], height=0.6)
    ax.errorbar(v, y, xerr=[v - lo, hi - v], fmt="none", color=INK, capsize=3, linewidth=1)
    if p.models > 1:
        for yi, name in zip(y, names):
            each = [e for e in p.accuracy[name].per_model if e is not None]
            ax.plot(each, [yi] * len(each), ".", color=INK, alpha=0.5, markersize=3.5)
    ax.axvline(p.chance, color=MUTED, linestyle=":", linewidth=1)
    ax.text(p.chance, -0.75, " chance", ha="left", va="center", fontsize=7, color=MUTED)
    for yi, vi, hii in zip(y, v, hi):
        if not np.isnan(vi):
            ax.text((hii if not np.isnan(hii) else vi) + 0.02, yi, f"{vi:.0%}", va="center",
                    fontsize=8)
    ax.set_yticks(y, [VARIANT_NAMES.get(n, n).replace("\n", " ") for n in names], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.12)
    ax.xaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax.set_xlabel("accuracy", fontsize=9)
    style(ax)
    ax.grid(axis="y", visible=False)
    return fig


def section(factor: str, key: str, p: ProtocolResult, page: PageContext) -> str:
    rows = "".join(f"<tr><td>{esc(VARIANT_NAMES.get(v, v).replace(chr(10), ' '))}</td>"
                   f"<td class='num'>{estimate_cell(a)}</td></tr>"
                   for v, a in p.accuracy.items())
    names = {"gap": "gap (mixed_same − mixed_rand), reliance",
             "only_fg_drop": "Only-FG drop on black (original − only_fg), robustness",
             "only_fg_neutral_drop": "Only-FG drop on the neutral backdrop"}
    extra = "".join(f"<tr><td><b>{names[m]}</b></td><td class='num'>"
                    f"{estimate_cell(getattr(p, m))}</td></tr>"
                    for m in DIFFERENCES if getattr(p, m) is not None)
    uri = page.pictures.uri(KIND.figure_name(key), lambda: protocol_figure(p))
    return f"""<h3>Background protocol <small>{p.base_scenes} base scenes ×
{len(p.accuracy)} variants × {p.models} model{'s' if p.models > 1 else ''}</small></h3>
<p>{prose(sentence(p))}</p>
{figure(uri, "background protocol")}
<details><summary>The numbers</summary><table class="numbers"><tbody>{rows}{extra}</tbody>
</table><p class="note">Only-BG-B, Only-BG-T and No-FG are made from the exact object masks
(ImageNet-9 uses bounding boxes): the object's pixels black, filled with background texture
from around it, or the scene rendered without it. The worst case is over the training
backgrounds ({esc(', '.join(p.worst_case_backgrounds) or 'none')}).</p></details>"""


def describe(exp: Experiment) -> list[str]:
    bp = exp.background_protocol
    if bp is None:
        return []
    return [f"background protocol: {bp.base_scenes} base scenes × {', '.join(bp.variants)}"]


KIND = ProbeKind(
    name="protocol", result_model=ProtocolResult, statistics=statistics,
    factors=lambda p: [KEY], reliance=reliance, robustness=robustness, precedence=0,
    metrics=metrics, claim=lambda p, factor: MADE_FOR,
    sentence=sentence, section=section, describe=describe,
    reliance_text="for the background the background gap (mixed_same - mixed_rand), every "
                  "backdrop a training one",
    glossary=(("Background gap", "Accuracy with backgrounds drawn for the object's own class\n"
               "(Mixed-Same) minus accuracy with backgrounds drawn for a random class "
               "(Mixed-Rand), as in the\nImageNet-9 backgrounds challenge."),
              ("Worst case", "The share of base scenes the model classifies right on every "
               "background\ntraining had."),))
