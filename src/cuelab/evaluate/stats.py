"""The statistics of the evaluation, as pure functions over a predictions table.

A predictions table is the scenes table (`cuelab.sampling`) with one more column, `pred`: the class
index the model chose for the row's image. Nothing here touches a model or an image, so every
number can be checked by hand on a made-up table.

Confidence intervals are percentile bootstraps over the independent units of each measure: images
for IID accuracy and cue conflicts, base scenes for sweeps and the background protocol (a base
scene's variants are paired, so they are resampled together). `Bootstrap` draws all resamples of
one measure at once as a (resamples, units) matrix of multiplicities, so a statistic is a matrix
product; its generator is seeded by (experiment seed, the measure's name), so every interval is
reproducible and does not depend on which other measures were computed.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

from ..config import Experiment, Sweep
from ..errors import CuelabError
from ..factors import REGISTRY
from ..sampling import _fmt as level_text  # the sweep level as the scenes table writes it


# --- estimates and the bootstrap -----------------------------------------------------------------

@dataclass(frozen=True)
class Estimate:
    """A number with its bootstrap confidence interval, over n resampled units.
    value is NaN when it is undefined (no units, or a ratio over nothing)."""
    value: float
    low: float
    high: float
    n: int

    def to_dict(self) -> dict:
        clean = lambda x: None if np.isnan(x) else round(float(x), 6)  # noqa: E731
        return {"value": clean(self.value), "low": clean(self.low), "high": clean(self.high),
                "n": self.n}


Statistic = Callable[[np.ndarray], np.ndarray]  # weights (m, n) -> values (m,) or (m, k)


@dataclass(frozen=True)
class Bootstrap:
    resamples: int = 1000
    confidence: float = 0.95
    seed: int = 0

    def weights(self, key: str, n: int) -> np.ndarray:
        """(resamples, n): how often each unit is drawn in each resample (rows sum to n)."""
        rng = np.random.default_rng([self.seed, zlib.crc32(key.encode())])
        draws = rng.integers(0, n, size=(self.resamples, n))
        offsets = np.arange(self.resamples)[:, None] * n
        counts = np.bincount((draws + offsets).ravel(), minlength=self.resamples * n)
        return counts.reshape(self.resamples, n).astype(np.float64)

    def estimates(self, key: str, n: int, statistic: Statistic, k: int = 1) -> list[Estimate]:
        """The statistic on all n units (weights of one), with its percentile interval; k values
        at once when the statistic returns (m, k)."""
        if n == 0:
            return [Estimate(np.nan, np.nan, np.nan, 0)] * k
        with np.errstate(invalid="ignore", divide="ignore"):
            point = np.asarray(statistic(np.ones((1, n)))).reshape(1, k)[0]
            boot = np.asarray(statistic(self.weights(key, n))).reshape(self.resamples, k)
        alpha = (1 - self.confidence) / 2
        out = []
        for j in range(k):
            values = boot[:, j][~np.isnan(boot[:, j])]
            lo, hi = np.quantile(values, [alpha, 1 - alpha]) if len(values) else (np.nan,) * 2
            out.append(Estimate(float(point[j]), float(lo), float(hi), n))
        return out

    def estimate(self, key: str, n: int, statistic: Statistic) -> Estimate:
        return self.estimates(key, n, statistic)[0]

    def mean(self, key: str, x: np.ndarray) -> Estimate:
        x = np.asarray(x, dtype=np.float64)
        return self.estimate(key, len(x), lambda w: w @ x / w.sum(1))

    def ratio(self, key: str, num: np.ndarray, den: np.ndarray) -> Estimate:
        """sum(num) / sum(den), resampling units that each carry a numerator and a denominator."""
        num, den = np.asarray(num, np.float64), np.asarray(den, np.float64)
        return self.estimate(key, len(num), lambda w: (w @ num) / (w @ den))


# --- IID accuracy --------------------------------------------------------------------------------

def confusion_matrix(labels: np.ndarray, preds: np.ndarray, k: int) -> np.ndarray:
    """counts[true, predicted]."""
    return np.bincount(np.asarray(labels) * k + np.asarray(preds), minlength=k * k).reshape(k, k)


def iid(table: pd.DataFrame, classes: list[str], boot: Bootstrap) -> dict:
    """Accuracy on the test split, its confusion matrix and each class's recall."""
    rows = table[table.split == "test"]
    labels, preds = rows.label.to_numpy(np.int64), rows.pred.to_numpy(np.int64)
    cm = confusion_matrix(labels, preds, len(classes))
    with np.errstate(invalid="ignore"):
        recall = np.diag(cm) / cm.sum(1)
    return {"accuracy": boot.mean("iid:accuracy", labels == preds),
            "confusion": cm.tolist(),
            "class_accuracy": {c: (None if np.isnan(r) else float(r))
                               for c, r in zip(classes, recall)}}


# --- sweeps and flip rates -----------------------------------------------------------------------

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


def sweep_curve(table: pd.DataFrame, exp: Experiment, sweep: Sweep, boot: Bootstrap) -> dict:
    """Accuracy at each level, and flip rates: at each level against the reference level of the
    same base scene (`reference_levels`), over all pairs of levels, and the largest over levels.
    Intervals resample base scenes."""
    name = sweep.factor
    levels = [level_text(lv) for lv in exp.sweep_levels(sweep)]
    rows = table[(table.split == "sweep") & (table.sweep == name)]
    bases = rows["base_id"].nunique()
    complete = (len(rows) == bases * len(levels) and set(rows["level"]) == set(levels)
                and not rows.duplicated(["base_id", "level"]).any())
    if not bases or not complete:
        raise CuelabError(f"sweep over {name}: the predictions need every base scene at every "
                          f"level ({', '.join(levels)}); got {len(rows)} rows for {bases} base "
                          "scenes: is the scenes table from this experiment?")
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

    # all pairs of levels of one base scene: pairs minus the pairs that agree
    votes = np.stack([(pred == c).sum(1) for c in np.unique(pred)], 1)
    pairs = np.full(n, m * (m - 1) / 2)
    flips = pairs - (votes * (votes - 1) / 2).sum(1)

    key = f"sweep:{name}"
    accuracy = lambda w: w @ correct / w.sum(1, keepdims=True)  # noqa: E731
    flip_rate = lambda w: (w @ (flipped * compared)) / (w @ compared)  # noqa: E731
    acc = boot.estimates(key, n, accuracy, m)
    flip = boot.estimates(key, n, flip_rate, m)
    ref_acc = boot.mean(key, ref_correct)
    drop = boot.estimate(key, n, lambda w: (w @ ref_correct / w.sum(1))
                         - accuracy(w).min(1))
    worst_flip = boot.estimate(key, n, lambda w: np.nanmax(flip_rate(w), 1))
    return {
        "factor": name, "stage": REGISTRY[name].stage, "levels": levels,
        "reference": dict(zip(exp.classes, ref_text)), "base_scenes": n,
        "accuracy": acc, "flip_rate": flip,
        "reference_accuracy": ref_acc,
        "max_accuracy_drop": drop,
        "max_accuracy_drop_level": levels[int(np.argmin([a.value for a in acc]))],
        "max_flip_rate": worst_flip,
        "max_flip_rate_level": levels[int(np.nanargmax([fr.value for fr in flip]))],
        "flip_rate_all_pairs": boot.ratio(key, flips, pairs),
    }


def sweep_curves(table: pd.DataFrame, exp: Experiment, boot: Bootstrap) -> dict[str, dict]:
    return {sw.factor: sweep_curve(table, exp, sw, boot) for sw in exp.sweeps}


# --- cue conflicts -------------------------------------------------------------------------------

def conflict_key(a: str, b: str) -> str:
    return f"{a}_vs_{b}"  # as the sampler names conflict rows


def cue_preference(table: pd.DataFrame, a: str, b: str, k: int, boot: Bootstrap) -> dict:
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
    return {
        "factors": [a, b], "images": len(rows),
        "preference": boot.ratio(name, follows_a, follows_a + follows_b),
        "share_a": boot.mean(name, follows_a),
        "share_b": boot.mean(name, follows_b),
        "share_other": boot.mean(name, 1 - follows_a - follows_b),
        "decisions": counts.tolist(),
        "preference_matrix": [[None if np.isnan(x) else float(x) for x in r] for r in cell],
    }


def cue_preferences(table: pd.DataFrame, exp: Experiment, boot: Bootstrap) -> dict[str, dict]:
    k = len(exp.classes)
    return {conflict_key(*c.factors): cue_preference(table, *c.factors, k, boot)
            for c in exp.conflicts}


# --- the background protocol ---------------------------------------------------------------------

def background_protocol(table: pd.DataFrame, boot: Bootstrap) -> dict:
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
    col = variants.index
    out: dict = {"variants": variants, "base_scenes": n,
                 "accuracy": dict(zip(variants, boot.estimates("protocol", n, mean,
                                                               len(variants))))}
    for name, hi, lo in (("gap", "mixed_same", "mixed_rand"),
                         ("only_fg_drop", "original", "only_fg")):
        if hi in variants and lo in variants:
            i, j = col(hi), col(lo)
            out[name] = boot.estimate("protocol", n, lambda w: mean(w)[:, i] - mean(w)[:, j])
    return out


# --- one scale for every factor ------------------------------------------------------------------

def importance_ranking(sweeps: dict, conflicts: dict, background: dict | None) -> list[dict]:
    """Each factor's importance: the largest share of the model's decisions that changing the
    factor moves, over every probe of it. The evidence, all fractions of probe decisions:

    - sweep: the largest flip rate against the reference level (decisions changed);
    - conflict (a, b): the share of all conflict decisions that follow the factor's cue;
    - background protocol: the background gap and the Only-FG drop (decisions lost).
    The evidence with the largest value sets the importance and its interval; factors are ranked
    by it, highest first. (Attribution is about where, not how much: it is not on this scale.)
    """
    evidence: dict[str, list[dict]] = {}

    def add(factor: str, probe: str, measure: str, detail: str, est: Estimate) -> None:
        if not np.isnan(est.value):
            evidence.setdefault(factor, []).append(
                {"probe": probe, "measure": measure, "detail": detail, **est.to_dict()})

    for name, s in sweeps.items():
        add(name, "sweep", "max flip rate", f"at {name}={s['max_flip_rate_level']}",
            s["max_flip_rate"])
    for key, c in conflicts.items():
        a, b = c["factors"]
        add(a, "conflict", "conflict share", f"{a} against {b}", c["share_a"])
        add(b, "conflict", "conflict share", f"{b} against {a}", c["share_b"])
    for key, measure, detail in (("gap", "background gap", "mixed_same - mixed_rand"),
                                 ("only_fg_drop", "only-fg drop", "original - only_fg")):
        if background and key in background:
            add("background", "background protocol", measure, detail, background[key])
    ranking = []
    for factor, items in evidence.items():
        top = max(items, key=lambda e: e["value"])
        ranking.append({"factor": factor, "importance": top["value"], "low": top["low"],
                        "high": top["high"], "measure": top["measure"],
                        "detail": top["detail"], "evidence": items})
    ranking.sort(key=lambda r: (-r["importance"], r["factor"]))
    for rank, r in enumerate(ranking, 1):
        r["rank"] = rank
    return ranking
