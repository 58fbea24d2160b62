"""Sweeps: each base scene at every level of one factor, all else equal (paired counterfactuals).

Each level is inside the training distribution (a level, or within the range, that training
images had) or outside it. Reliance comes from inside only: the cue shift, how far setting a
factor that is paired with the classes to a class's level pulls decisions to that class. Outside,
the accuracy drop against the training levels says how robust the model is. Flip rates compare
each level with the reference levels (what the class typically had in training). Intervals
resample models, then base scenes. Everything about the kind is here: its result, statistics,
evidence, metrics and plot data, and its part of the page.
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
from ..factors.scene import LIGHT_PATTERN_COLORS
from ..report import words as say
from ..report.figures import ACCURACY, FLIP, INK, MUTED, style, values
from ..report.markup import PageContext, esc, estimate_cell, figure, prose
from ..scenes import in_training, indicated_class, level_text, training_text
from .base import EVIDENCE, Evidence, Fragility, ProbeKind, ProbeRef, by_model
from .estimate import Bootstrap, Estimate, Strict, total


class SweepResult(Strict):
    factor: str
    stage: Literal["scene", "sensor"]
    levels: list[str]                 # as the scenes table's `level` column writes them
    in_training: list[bool]           # per level: did training images have it?
    training: str                     # what training had of the factor, in words
    indicated: list[str | None]       # per level: the class it indicates in training, if one
    reference: dict[str, list[str]]   # class -> the levels its flip rates compare against
    base_scenes: int
    models: int
    accuracy: list[Estimate]          # per level
    flip_rate: list[Estimate]         # per level, against the reference levels
    accuracy_in_training: Estimate    # mean accuracy over the levels inside training
    accuracy_drop: list[Estimate | None]  # per level outside training: the above minus its own
    flip_rate_in_training: Estimate   # over all pairs of levels inside training
    cue_shift: Estimate | None        # reliance: see `cue_shift`


# --- statistics ----------------------------------------------------------------------------------

def reference_levels(exp: Experiment, sweep: Sweep) -> list[list[str]]:
    """For each class, the sweep levels its flip rates compare against:

    - the level stated in the sweep (`reference`), for every class;
    - the label factor: the class's own level;
    - a factor correlated with the class (rho > 0): the level paired with the class (cube-red);
    - a factor the experiment does not vary: its registry default (iso 0, jpeg_quality 0, ...);
    - a numeric factor it varies: the centre of its training distribution (the median of its
      levels; the middle of its range, geometric for loguniform);
    - a categorical factor it varies without correlation: every training level (each compared:
      no level is more typical than another).
    A numeric value picks the nearest swept level; where nothing of the above is swept, every
    level inside training is the reference (every level, if none is).
    """
    name, k = sweep.factor, len(exp.classes)
    f, spec = REGISTRY[name], exp.factors.get(name)
    levels = exp.sweep_levels(sweep)
    inside = [lv for lv in levels if in_training(exp, name, lv)] or levels
    if sweep.reference is not None:
        typical = [sweep.reference] * k
    elif name == exp.label.factor:
        typical = list(exp.classes)
    elif spec is None:
        typical = [f.default] * k
    elif spec.correlation is not None and spec.correlation.rho > 0:
        typical = [sum(p) / 2 if isinstance(p, tuple) else p for p in exp.pairs(name)]
    elif f.is_categorical:
        typical = [None] * k
    elif spec.levels is not None:
        typical = [float(np.median(spec.levels))] * k
    else:
        lo, hi = spec.range
        typical = [np.sqrt(lo * hi) if spec.distribution == "loguniform" else (lo + hi) / 2] * k

    def nearest(value) -> list[str]:
        if value is None or (f.is_categorical and value not in levels):
            return [level_text(lv) for lv in inside]
        if f.is_categorical:
            return [level_text(value)]
        return [level_text(levels[int(np.argmin([abs(lv - value) for lv in levels]))])]

    return [nearest(v) for v in typical]


def _sweep_rows(table: pd.DataFrame, name: str, levels: list[str]) -> pd.DataFrame:
    """The sweep's rows, checked to hold every base scene at every level for every model."""
    rows = table[(table.split == "sweep") & (table.sweep == name)]
    bases, models = rows["base_id"].nunique(), rows["replicate"].nunique()
    complete = (len(rows) == bases * len(levels) * models and set(rows["level"]) == set(levels)
                and not rows.duplicated(["replicate", "base_id", "level"]).any())
    if not bases or not complete:
        raise CuelabError(f"sweep over {name}: the predictions need every base scene at every "
                          f"level ({', '.join(levels)}); got {len(rows)} rows for {bases} base "
                          f"scenes and {models} models: is the scenes table from this "
                          "experiment?")
    return rows


def cue_shift(pred: np.ndarray, indicated: list[int | None], inside: np.ndarray) -> np.ndarray:
    """Per model and base scene (pred: models, scenes, levels): over the training levels L that
    indicate a class c(L), the mean of [decision at L is c(L)] minus the share of the scene's
    other training levels whose decision is c(L). How far setting the factor to a class's level
    pulls decisions to that class: 0 in expectation for a model that does not use the factor
    (its decisions do not depend on the level), 1 for one that follows it alone. NaN without
    two training levels, one of which indicates a class."""
    m = pred.shape[-1]
    cued = [j for j in range(m) if inside[j] and indicated[j] is not None]
    if not cued or inside.sum() < 2:
        return np.full(pred.shape[:2], np.nan)
    parts = []
    for j in cued:
        others = [i for i in range(m) if inside[i] and i != j]
        c = indicated[j]
        parts.append((pred[..., j] == c) - (pred[..., others] == c).mean(-1))
    return np.mean(parts, 0)


def sweep_curve(table: pd.DataFrame, exp: Experiment, sweep: Sweep,
                boot: Bootstrap) -> SweepResult:
    """Accuracy at each level; flip rates against the reference levels and between the training
    levels; accuracy outside training against inside; and the cue shift (reliance). Intervals
    resample models, then base scenes."""
    name = sweep.factor
    values = exp.sweep_levels(sweep)
    levels = [level_text(lv) for lv in values]
    rows = _sweep_rows(table, name, levels)
    pred = by_model(rows, "base_id", "level", "pred", levels)
    correct = (pred == by_model(rows, "base_id", "level", "label", levels)).astype(np.float64)
    models, n, m = pred.shape
    inside = np.array([in_training(exp, name, v) for v in values])
    indicated = [indicated_class(exp, name, v) if ok else None for v, ok in zip(values, inside)]

    ref_text = reference_levels(exp, sweep)
    base_class = rows[rows.replicate == rows.replicate.min()].groupby(
        "base_id").label.first().sort_index().to_numpy()
    refs = np.array([[lv in ref_text[c] for lv in levels] for c in base_class], float)  # (n, m)
    differ = (pred[..., :, None] != pred[..., None, :]).astype(np.float64)  # (M, n, m, m)
    compared = refs[:, None, :] * (1 - np.eye(m))[None]                      # (n, m, m)
    flip_num = (differ * compared).sum(-1)                                   # (M, n, m)
    flip_den = np.broadcast_to(compared.sum(-1), flip_num.shape)
    pairs = np.outer(inside, inside) * (1 - np.eye(m))
    within_num = (differ * pairs).sum((-1, -2)) / 2                          # (M, n)
    within_den = np.full(within_num.shape, pairs.sum() / 2)
    acc_inside = correct[..., inside].mean(-1) if inside.any() else np.full((models, n), np.nan)
    outside = np.flatnonzero(~inside)
    drops = acc_inside[..., None] - correct[..., outside]                    # (M, n, outside)

    key = f"sweep:{name}"
    per_level = lambda x: lambda w: total(w, x) / w.sum(1)[:, None, None]  # noqa: E731
    ratio = lambda num, den: lambda w: total(w, num) / total(w, den)  # noqa: E731
    accuracy = boot.intervals(key, n, models, per_level(correct), m)
    flip = boot.intervals(key, n, models, ratio(flip_num, flip_den), m)
    drop = iter(boot.intervals(key, n, models, per_level(drops), len(outside))
                if len(outside) else [])
    shift = cue_shift(pred, indicated, inside)
    return SweepResult(
        factor=name, stage=REGISTRY[name].stage, levels=levels, in_training=inside.tolist(),
        training=training_text(exp, name),
        indicated=[None if c is None else exp.classes[c] for c in indicated],
        reference=dict(zip(exp.classes, ref_text)), base_scenes=n, models=models,
        accuracy=accuracy, flip_rate=flip,
        accuracy_in_training=boot.mean(key, acc_inside),
        accuracy_drop=[None if ok else next(drop) for ok in inside],
        flip_rate_in_training=(boot.ratio(key, within_num, within_den) if pairs.any()
                               else Estimate.of(np.nan, np.nan, np.nan, n)),
        cue_shift=None if np.isnan(shift).all() else boot.mean(key, shift))


def statistics(table: pd.DataFrame, exp: Experiment, boot: Bootstrap) -> dict[str, SweepResult]:
    return {sw.factor: sweep_curve(table, exp, sw, boot) for sw in exp.sweeps}


# --- what the rest of cuelab takes from a sweep --------------------------------------------------

def reliance(key: str, s: SweepResult) -> list[tuple[str, Evidence]]:
    """The cue shift, where the factor indicates classes in training."""
    if s.cue_shift is None:
        return []
    return [(s.factor, Evidence(ref=ProbeRef(kind="sweep", key=key, measure="cue_shift"),
                                label="cue shift",
                                detail=f"over its training levels ({s.models} models)",
                                estimate=s.cue_shift))]


def robustness(key: str, s: SweepResult) -> list[Fragility]:
    """Each level outside training: accuracy there against inside."""
    return [Fragility(ref=ProbeRef(kind="sweep", key=key, measure=f"accuracy_drop[{i}]"),
                      factor=s.factor, condition=f"{say.name(s.factor)} = "
                      f"{say.level(s.factor, lv)}",
                      why=f"never in training (training had {s.training})",
                      accuracy=s.accuracy[i], baseline=s.accuracy_in_training, drop=d)
            for i, (lv, d) in enumerate(zip(s.levels, s.accuracy_drop)) if d is not None]


def metrics(sweeps: dict[str, SweepResult]) -> dict[str, dict]:
    out = {}
    for name, s in sweeps.items():
        numbers = {**s.accuracy_in_training.metrics("accuracy_in_training"),
                   **s.flip_rate_in_training.metrics("flip_rate_in_training")}
        if s.cue_shift is not None:
            numbers |= s.cue_shift.metrics("cue_shift")
        for lv, d in zip(s.levels, s.accuracy_drop):
            if d is not None:
                numbers |= d.metrics(f"accuracy_drop_at_{lv}")
        out[name] = numbers
    return {"sweep": out}


def plots(sweeps: dict[str, SweepResult], folder: Path) -> None:
    """sweeps/F.json per swept factor F, a row per level (typed numbers, so the template
    sweep_plot.json in cuelab/evaluate can keep the sweep's order)."""
    (folder / "sweeps").mkdir()
    for name, s in sweeps.items():
        records = [{"order": i, "level": level, "in_training": inside,
                    "accuracy": acc.value, "low": acc.low, "high": acc.high,
                    "flip_rate": flip.value, "flip_low": flip.low, "flip_high": flip.high}
                   for i, (level, inside, acc, flip) in enumerate(zip(
                       s.levels, s.in_training, s.accuracy, s.flip_rate))]
        (folder / "sweeps" / f"{name}.json").write_text(json.dumps(records, indent=1))


# --- in words and pictures -----------------------------------------------------------------------

def _reference(sweep: SweepResult) -> str:
    refs = {tuple(r) for r in sweep.reference.values()}
    if len(refs) == 1:
        ref = refs.pop()
        if len(ref) == 1:
            return say.level(sweep.factor, ref[0])
        return "each of its training levels"
    return "the level paired with the image's class in training"


def shift_sentence(sweep: SweepResult) -> str:
    """Reliance: how far setting the factor to a class's level pulls decisions to that class."""
    f, shift = sweep.factor, sweep.cue_shift
    models = f"{sweep.models} trained model{'s' if sweep.models > 1 else ''}"
    where = (f"{sweep.base_scenes} base scenes, {models}; training levels only")
    how = say.direction(shift)
    if how == "up":
        return (f"setting {say.name(f)} to the level paired with a class in training pulls "
                f"{say.estimate(shift)} of the decisions to that class, compared with its other "
                f"training levels ({where})")
    if how == "down":
        return (f"setting {say.name(f)} to the level paired with a class pushes decisions away "
                f"from that class ({say.estimate(shift)}; {where})")
    if how == "none":
        return (f"no sign the model follows {say.name(f)}: setting it to a class's level moves "
                f"{say.estimate(shift)} of the decisions to that class ({where})")
    return (f"setting {say.name(f)} to a class's level moves {say.estimate(shift)} of the "
            f"decisions to that class, an interval that includes no effect ({where})")


def sentence(sweep: SweepResult, factor: str | None = None,
             label_factor: str | None = None) -> str:
    """Reliance (the cue shift) where the factor indicates classes, then how much the decisions
    move between training levels, then robustness outside training."""
    f, n = sweep.factor, sweep.base_scenes
    parts = []
    if sweep.cue_shift is not None:
        parts.append(shift_sentence(sweep))
    else:
        parts.append(f"{say.name(f)} indicates no class in training, so the model has no "
                     f"reason to rely on it")
    within = sweep.flip_rate_in_training
    if say.defined(within):
        parts.append(f"between its training levels decisions change in "
                     f"{say.estimate(within)} of the pairs")
    worst = _worst_outside(sweep)
    if worst is not None:
        i, drop = worst
        parts.append(f"outside training, accuracy goes from {say.pct(sweep.accuracy_in_training.value)} "
                     f"at the training levels to {say.pct(sweep.accuracy[i].value)} at "
                     f"{say.level(f, sweep.levels[i])} (training had {sweep.training})")
    text = "; ".join(parts)
    if f == label_factor:
        text += f" ({say.name(f)} is the label: a model that reads it should follow it)"
    return text


def _worst_outside(sweep: SweepResult) -> tuple[int, Estimate] | None:
    """The level outside training with the largest drop, for words only (every level's drop
    and interval is in the robustness table; none is selected for a statistic)."""
    found = [(i, d) for i, d in enumerate(sweep.accuracy_drop) if say.defined(d)]
    return max(found, key=lambda x: x[1].value) if found else None


def sweep_figure(sweep: SweepResult) -> Figure:
    """Accuracy and flip rate at each level, with bands for their intervals and each model's
    accuracy as dots; levels outside training shaded."""
    f, levels = sweep.factor, sweep.levels
    x = np.arange(len(levels))
    fig = Figure(figsize=(6.4, 2.9), layout="constrained")
    ax = fig.add_subplot()
    for i, inside in enumerate(sweep.in_training):
        if not inside:
            ax.axvspan(i - 0.45, i + 0.45, color="#f3ece4", zorder=0)
    if not all(sweep.in_training):
        ax.text(x[sweep.in_training.index(False)], 1.03, "not in training", ha="center",
                va="bottom", fontsize=7, color=MUTED)
    for ests, color, label, line in ((sweep.accuracy, ACCURACY, "accuracy", "-"),
                                     (sweep.flip_rate, FLIP, "flip rate vs reference", "--")):
        v, lo, hi = (values(ests, k) for k in ("value", "low", "high"))
        ax.fill_between(x, lo, hi, color=color, alpha=0.18, linewidth=0)
        ax.plot(x, v, line, color=color, marker="o", markersize=4, linewidth=1.6, label=label)
    if sweep.models > 1:
        for i, e in enumerate(sweep.accuracy):
            each = [p for p in e.per_model if p is not None]
            ax.plot([i] * len(each), each, ".", color=ACCURACY, alpha=0.45, markersize=3.5,
                    label="each model" if i == 0 else None)
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
        f"<tr><td>{esc(say.level(f, lv))}</td><td>{'yes' if inside else '<b>no</b>'}</td>"
        f"<td>{esc(c or '–')}</td><td class='num'>{estimate_cell(a)}</td>"
        f"<td class='num'>{estimate_cell(fl)}</td><td class='num'>{estimate_cell(d)}</td></tr>"
        for lv, inside, c, a, fl, d in zip(sweep.levels, sweep.in_training, sweep.indicated,
                                           sweep.accuracy, sweep.flip_rate, sweep.accuracy_drop))
    refs = ", ".join(f"{c}: {', '.join(say.level(f, lv) for lv in lv_list)}"
                     for c, lv_list in sweep.reference.items())
    uri = page.pictures.uri(KIND.figure_name(key), lambda: sweep_figure(sweep))
    coupling = COUPLINGS.get(f)
    note = f"<p class='warning'>{esc(coupling)}</p>" if coupling else ""
    return f"""<h3>Sweep <small>{sweep.base_scenes} base scenes × {len(sweep.levels)}
levels × {sweep.models} model{'s' if sweep.models > 1 else ''}, {esc(sweep.stage)} factor</small></h3>
<p>{prose(sentence(sweep, factor, page.label_factor))}</p>{note}
{figure(uri, f"sweep over {f}")}
<details><summary>The numbers</summary><table class="numbers"><thead><tr><th>{esc(say.name(f))}</th>
<th>in training</th><th>indicates</th><th>accuracy</th><th>flip rate vs reference</th>
<th>accuracy drop vs training levels</th></tr></thead><tbody>{rows}</tbody></table>
<p class="note">Reference levels per class: {esc(refs)}. Mean accuracy at the training levels:
{esc(say.estimate(sweep.accuracy_in_training))}. Intervals resample the trained models, then the
base scenes.</p></details>"""


# Couplings between factors that a sweep cannot remove, said next to its sweep.
COUPLINGS = {
    "color": "A texture's pattern is the base colour 40 L* lighter or darker, so it stays "
             "visible on every palette colour (tests/test_render.py measures its contrast); "
             "what changes with the colour is its polarity: lighter than the base on "
             + ", ".join(sorted(LIGHT_PATTERN_COLORS)) + ", darker on the others.",
    "light_intensity": "Light changes the brightness of the object and its pattern together; "
                       "the backdrop, lit by nothing, stays the same.",
}


def describe(exp: Experiment) -> list[str]:
    return [f"sweep {sw.factor}: {sw.base_scenes} base scenes × {len(exp.sweep_levels(sw))} "
            "levels" for sw in exp.sweeps]


KIND = ProbeKind(
    name="sweep", result_model=SweepResult, statistics=statistics,
    factors=lambda s: [s.factor], reliance=reliance, robustness=robustness, precedence=1,
    metrics=metrics, plots=plots,
    claim=lambda s, factor: EVIDENCE, sentence=sentence, section=section, describe=describe,
    reliance_text="for a factor paired with the classes in training, its sweep's cue shift: the "
                  "share of decisions that setting it to a class's training level pulls to that "
                  "class, against its other training levels",
    glossary=(("Cue shift", "On paired counterfactuals (the same base scene, only one factor "
               "changed), over the\nlevels training had: the share of decisions for the class a "
               "level indicates when the factor is at\nthat level, minus the share at its other "
               "training levels. 0 for a model that ignores the factor."),
              ("Flip rate", "The share of base scenes whose decision at a level differs from "
               "their decision at\nthe reference level (the level the class typically had in "
               "training; for a factor varied\nwithout correlation, each training level)."),
              ("In training", "A level training images had (one of the factor's levels, inside "
               "its range, or its\ndefault when the experiment does not vary it). Evidence "
               "from other levels says how robust the\nmodel is, not what it relies on.")))
