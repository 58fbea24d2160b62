"""Sweeps: each base scene at every level of one factor, all else equal (paired counterfactuals).

Measures accuracy at each level and flip rates: the share of base scenes whose decision changes
from the level the class typically had in training (the reference). Intervals resample base
scenes. Everything about the kind is here: its result, statistics, importance evidence, metrics
and plot data, and its part of the page.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter

from ..config import Experiment, Sweep
from ..errors import CuelabError
from ..factors import REGISTRY
from ..report import words as say
from ..report.figures import ACCURACY, FLIP, INK, MUTED, style, values
from ..report.markup import PageContext, esc, estimate_cell, figure, prose
from ..scenes import level_text
from .base import EVIDENCE, Evidence, ProbeKind, ProbeRef
from .estimate import Bootstrap, Estimate, Strict


class SweepResult(Strict):
    factor: str
    stage: Literal["scene", "sensor"]
    levels: list[str]                 # as the scenes table's `level` column writes them
    reference: dict[str, str]         # class -> the level its flip rates compare against
    base_scenes: int
    accuracy: list[Estimate]          # per level
    flip_rate: list[Estimate]         # per level, against the reference (undefined at it)
    reference_accuracy: Estimate
    max_accuracy_drop: Estimate
    max_accuracy_drop_level: str
    max_flip_rate: Estimate
    max_flip_rate_level: str
    flip_rate_all_pairs: Estimate     # over all pairs of levels of each base scene


# --- statistics ----------------------------------------------------------------------------------

def reference_levels(exp: Experiment, sweep: Sweep) -> list[str]:
    """For each class, the sweep level its images typically had in training: flip rates compare
    every level against it.

    - a factor the experiment does not vary: its registry default (iso 0, jpeg_quality 0, ...);
    - a factor correlated with the class (rho > 0): the level paired with the class (cube-red);
    - another categorical factor: its default if it is a training level, else the likeliest;
    - another numeric factor: the centre of its training range (geometric for loguniform), or
      the median of its training levels;
    - the label factor itself: the first class swept (any level of it should flip the decision).
    A numeric value picks the nearest swept level; a categorical one that is not swept, the first.
    """
    name, k = sweep.factor, len(exp.classes)
    f, spec = REGISTRY[name], exp.factors.get(name)
    levels = exp.sweep_levels(sweep)
    if name == exp.label.factor:
        typical = [levels[0]] * k
    elif spec is None:
        typical = [f.default] * k
    elif spec.correlation is not None and spec.correlation.rho > 0:
        typical = [sum(p) / 2 if isinstance(p, tuple) else p for p in exp.pairs(name)]
    elif spec.levels is not None and f.is_categorical:
        w = np.asarray(spec.weights or [1.0] * len(spec.levels))
        likeliest = [lv for lv, wi in zip(spec.levels, w) if wi == w.max()]
        typical = [f.default if f.default in likeliest else likeliest[0]] * k
    elif spec.levels is not None:
        typical = [float(np.median(spec.levels))] * k
    else:
        lo, hi = spec.range
        centre = np.sqrt(lo * hi) if spec.distribution == "loguniform" else (lo + hi) / 2
        typical = [centre] * k

    def nearest(value) -> str:
        if f.is_categorical:
            return level_text(value if value in levels else levels[0])
        return level_text(levels[int(np.argmin([abs(lv - value) for lv in levels]))])

    return [nearest(v) for v in typical]


def _sweep_matrix(rows: pd.DataFrame, levels: list[str], column: str) -> np.ndarray:
    """(base scenes, levels) of one column, bases in id order."""
    wide = rows.pivot(index="base_id", columns="level", values=column)
    return wide.sort_index()[levels].to_numpy(np.int64)


def _sweep_rows(table: pd.DataFrame, name: str, levels: list[str]) -> pd.DataFrame:
    """The sweep's rows, checked to hold every base scene at every level."""
    rows = table[(table.split == "sweep") & (table.sweep == name)]
    bases = rows["base_id"].nunique()
    complete = (len(rows) == bases * len(levels) and set(rows["level"]) == set(levels)
                and not rows.duplicated(["base_id", "level"]).any())
    if not bases or not complete:
        raise CuelabError(f"sweep over {name}: the predictions need every base scene at every "
                          f"level ({', '.join(levels)}); got {len(rows)} rows for {bases} base "
                          "scenes: is the scenes table from this experiment?")
    return rows


def _flips_over_all_pairs(pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per base scene (a row of predictions by level): the pairs of levels whose decisions
    differ, and all pairs: pairs minus the pairs that agree."""
    n, m = pred.shape
    votes = np.stack([(pred == c).sum(1) for c in np.unique(pred)], 1)
    pairs = np.full(n, m * (m - 1) / 2)
    return pairs - (votes * (votes - 1) / 2).sum(1), pairs


def sweep_curve(table: pd.DataFrame, exp: Experiment, sweep: Sweep,
                boot: Bootstrap) -> SweepResult:
    """Accuracy at each level, and flip rates: at each level against the reference level of the
    same base scene (`reference_levels`), over all pairs of levels, and the largest over levels.
    Intervals resample base scenes."""
    name = sweep.factor
    levels = [level_text(lv) for lv in exp.sweep_levels(sweep)]
    rows = _sweep_rows(table, name, levels)
    pred = _sweep_matrix(rows, levels, "pred")
    correct = (pred == _sweep_matrix(rows, levels, "label")).astype(np.float64)
    n, m = pred.shape

    ref_text = reference_levels(exp, sweep)
    # in a sweep over the label itself every level has its own label; the reference is one level
    base_class = rows.groupby("base_id").label.first().sort_index().to_numpy()
    ref = np.array([levels.index(ref_text[c]) for c in base_class])
    ref_pred = pred[np.arange(n), ref]
    flipped = (pred != ref_pred[:, None]).astype(np.float64)
    compared = (np.arange(m)[None, :] != ref[:, None]).astype(np.float64)
    ref_correct = correct[np.arange(n), ref]
    flips, pairs = _flips_over_all_pairs(pred)

    key = f"sweep:{name}"
    accuracy = lambda w: w @ correct / w.sum(1, keepdims=True)  # noqa: E731
    flip_rate = lambda w: (w @ (flipped * compared)) / (w @ compared)  # noqa: E731
    acc = boot.intervals(key, n, accuracy, m)
    flip = boot.intervals(key, n, flip_rate, m)
    return SweepResult(
        factor=name, stage=REGISTRY[name].stage, levels=levels,
        reference=dict(zip(exp.classes, ref_text)), base_scenes=n,
        accuracy=[Estimate.of(*e, n) for e in zip(*acc)],
        flip_rate=[Estimate.of(*e, n) for e in zip(*flip)],
        reference_accuracy=boot.mean(key, ref_correct),
        max_accuracy_drop=boot.estimate(key, n, lambda w: (w @ ref_correct / w.sum(1))
                                        - accuracy(w).min(1)),
        max_accuracy_drop_level=levels[int(np.argmin(acc[0]))],
        max_flip_rate=boot.estimate(key, n, lambda w: np.nanmax(flip_rate(w), 1)),
        max_flip_rate_level=levels[int(np.nanargmax(flip[0]))],
        flip_rate_all_pairs=boot.ratio(key, flips, pairs))


def statistics(table: pd.DataFrame, exp: Experiment, boot: Bootstrap) -> dict[str, SweepResult]:
    return {sw.factor: sweep_curve(table, exp, sw, boot) for sw in exp.sweeps}


# --- what the rest of cuelab takes from a sweep --------------------------------------------------

def evidence(key: str, s: SweepResult) -> list[tuple[str, Evidence]]:
    """The largest flip rate against the reference level (decisions changed)."""
    return [(s.factor, Evidence(ref=ProbeRef(kind="sweep", key=key, measure="max_flip_rate"),
                                label="max flip rate",
                                detail=f"at {s.factor}={s.max_flip_rate_level}",
                                estimate=s.max_flip_rate))]


def metrics(sweeps: dict[str, SweepResult]) -> dict[str, dict]:
    return {"sweep": {name: {**s.max_flip_rate.metrics("max_flip_rate"),
                             **s.max_accuracy_drop.metrics("max_accuracy_drop"),
                             **s.flip_rate_all_pairs.metrics("flip_rate_all_pairs")}
                      for name, s in sweeps.items()}}


def plots(sweeps: dict[str, SweepResult], folder: Path) -> None:
    """sweeps/F.json per swept factor F, a row per level (typed numbers, so the template
    sweep_plot.json in cuelab/evaluate can keep the sweep's order)."""
    (folder / "sweeps").mkdir()
    for name, s in sweeps.items():
        records = [{"order": i, "level": level,
                    "accuracy": acc.value, "low": acc.low, "high": acc.high,
                    "flip_rate": flip.value, "flip_low": flip.low, "flip_high": flip.high}
                   for i, (level, acc, flip) in enumerate(zip(s.levels, s.accuracy,
                                                              s.flip_rate))]
        (folder / "sweeps" / f"{name}.json").write_text(json.dumps(records, indent=1))


# --- in words and pictures -----------------------------------------------------------------------

def _reference(sweep: SweepResult) -> str:
    refs = set(sweep.reference.values())
    if len(refs) == 1:
        return say.level(sweep.factor, refs.pop())
    return "the level paired with the image's class in training"


def sentence(sweep: SweepResult, factor: str | None = None,
             label_factor: str | None = None) -> str:
    """How much changing one factor moves the decisions (flip rate) and the accuracy."""
    f = sweep.factor
    flip, worst, n = sweep.max_flip_rate, sweep.max_flip_rate_level, sweep.base_scenes
    ref = _reference(sweep)
    if not say.defined(flip):
        text = f"the flip rate of the {say.name(f)} sweep is undefined ({n} base scenes)"
    elif flip.high is not None and flip.high < say.NOTABLE:
        text = (f"predictions barely move when {say.name(f)} changes: at most "
                f"{say.estimate(flip)} of {n} base scenes change their decision between {ref} "
                f"and {say.level(f, worst)}")
    else:
        text = (f"predictions change in {say.estimate(flip)} of {n} base scenes when "
                f"{say.name(f)} goes from {ref} to {say.level(f, worst)}")
    text += say.width_caveat(flip, "base scenes") + _accuracy_clause(sweep)
    if f == label_factor:
        text += f" ({say.name(f)} is the label: a model that reads it should flip)"
    return text


def _accuracy_clause(sweep: SweepResult) -> str:
    f, drop, at = sweep.factor, sweep.max_accuracy_drop, sweep.max_accuracy_drop_level
    lowest = say.pct(dict(zip(sweep.levels, sweep.accuracy))[at].value)
    reference = say.pct(sweep.reference_accuracy.value)
    accuracies = [a.value for a in sweep.accuracy if a.value is not None]
    how = say.direction(drop)
    if how == "up":
        return (f"; accuracy falls from {reference} at the reference to {lowest} at "
                f"{say.level(f, at)} (a drop of {say.estimate(drop)})")
    if how == "unclear":
        return (f"; accuracy goes from {reference} at the reference to {lowest} at "
                f"{say.level(f, at)}, but that drop of {say.estimate(drop)} could be chance")
    if how == "down":
        return f"; accuracy is higher at every level than at the reference ({reference})"
    if how == "none" and say.pct(min(accuracies)) == say.pct(max(accuracies)):
        return f"; accuracy is {say.pct(min(accuracies))} at every level"
    if how == "none":
        return (f"; accuracy stays between {say.pct(min(accuracies))} and "
                f"{say.pct(max(accuracies))} across the levels")
    return ""


def sweep_figure(sweep: SweepResult) -> Figure:
    """Accuracy and flip rate at each level, with bands for their intervals; the reference level
    shaded when every class shares it."""
    f, levels = sweep.factor, sweep.levels
    x = np.arange(len(levels))
    fig = Figure(figsize=(6.4, 2.9), layout="constrained")
    ax = fig.add_subplot()
    refs = set(sweep.reference.values())
    ref = refs.pop() if len(refs) == 1 else None
    if ref in levels:
        i = levels.index(ref)
        ax.axvspan(i - 0.35, i + 0.35, color="#eceef2", zorder=0)
        ax.text(i, 1.03, "reference", ha="center", va="bottom", fontsize=7, color=MUTED)
    elif (at_reference := sweep.reference_accuracy.value) is not None:
        # each class has its own reference level: its accuracy is no point on the curve
        ax.axhline(at_reference, color=ACCURACY, linestyle=":", linewidth=1.2,
                   label="accuracy at each class's\nreference level")
    for ests, color, label, line in ((sweep.accuracy, ACCURACY, "accuracy", "-"),
                                     (sweep.flip_rate, FLIP, "flip rate vs reference", "--")):
        v, lo, hi = (values(ests, k) for k in ("value", "low", "high"))
        if ests is sweep.flip_rate and ref in levels:  # the reference does not flip against itself
            v[levels.index(ref)] = lo[levels.index(ref)] = hi[levels.index(ref)] = 0.0
        ax.fill_between(x, lo, hi, color=color, alpha=0.18, linewidth=0)
        ax.plot(x, v, line, color=color, marker="o", markersize=4, linewidth=1.6, label=label)
    crowded = len(levels) > 5
    ax.set_xticks(x, [say.level(f, lv) for lv in levels], rotation=25 if crowded else 0,
                  ha="right" if crowded else "center")
    ax.set_xlim(-0.5, len(levels) - 0.5)
    ax.set_ylim(-0.02, 1.08)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax.set_xlabel(say.name(f), fontsize=9, color=INK)
    style(ax)
    ax.legend(fontsize=8, frameon=False, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return fig


def section(factor: str, key: str, sweep: SweepResult, page: PageContext) -> str:
    f = sweep.factor
    rows = "".join(
        f"<tr><td>{esc(say.level(f, lv))}</td><td class='num'>{estimate_cell(a)}</td>"
        f"<td class='num'>{'reference' if fl.value is None else estimate_cell(fl)}</td></tr>"
        for lv, a, fl in zip(sweep.levels, sweep.accuracy, sweep.flip_rate))
    refs = ", ".join(f"{c}: {say.level(f, lv)}" for c, lv in sweep.reference.items())
    uri = page.pictures.uri(KIND.figure_name(key), lambda: sweep_figure(sweep))
    return f"""<h3>Sweep <small>{sweep.base_scenes} base scenes × {len(sweep.levels)}
levels, {esc(sweep.stage)} factor</small></h3>
<p>{prose(sentence(sweep, factor, page.label_factor))}</p>
{figure(uri, f"sweep over {f}")}
<details><summary>The numbers</summary><table class="numbers"><thead><tr><th>{esc(say.name(f))}</th>
<th>accuracy</th><th>flip rate vs reference</th></tr></thead><tbody>{rows}</tbody></table>
<p class="note">Reference level per class: {esc(refs)}. Flip rate over all pairs of levels:
{esc(say.estimate(sweep.flip_rate_all_pairs))}.</p></details>"""


def describe(exp: Experiment) -> list[str]:
    return [f"sweep {sw.factor}: {sw.base_scenes} base scenes × {len(exp.sweep_levels(sw))} "
            "levels" for sw in exp.sweeps]


KIND = ProbeKind(
    name="sweep", result_model=SweepResult, statistics=statistics,
    factors=lambda s: [s.factor], evidence=evidence, metrics=metrics, plots=plots,
    claim=lambda s, factor: EVIDENCE, sentence=sentence, section=section, describe=describe,
    importance="the largest flip rate of its sweep against the reference level",
    glossary=(("Flip rate", "On paired counterfactuals (the same base scene, only one factor "
               "changed),\nthe share of base scenes whose decision at a level differs from "
               "their decision at the reference\nlevel: the level the class typically had in "
               "training."),))
