"""The study report (`cuelab study report`): every finished variant's measures against each
numeric axis, and where a dose-response crosses over, on one self-contained page with CSV tables
beside it.

Where it reads: <runs>/<variant>/evaluation/results.json for each variant of the study (and links
<runs>/<variant>/trace_report.html where there is one): the layout of reports/ in one project,
one folder per variant. A variant without results is listed as not finished; the rest are
compared.

Measures (each an `Estimate` of results.json: a value, its interval covering replicated models
and probe scenes, and each model's value): IID accuracy; the reliance on each factor; each cue
conflict's preference (a over b); the background gap; the worst-group accuracy per factor; the
accuracy drop of each robustness condition.

Levels side by side, against each categorical axis (a mitigation, an architecture): each level's
measures beside the first level's (the baseline: list `none` first), with the difference's
interval; a difference is said to have risen or fallen only where the two levels' intervals do
not overlap, so a mitigation that lowers one reliance shows which others rose. Beside it, each
test background's accuracy per level (the background sweep's levels and the background
protocol's variants), in the shape of Cruz & Cardoso's Table 1.

Crossovers, where a dose-response switches: each conflict's preference crossing 0.5 (the cue the
network follows changes), and each pair of factors' reliance crossing each other (their
difference crossing 0), against each numeric axis, the other axes held (one curve per
combination of their values). The crossing is found by linear interpolation between the levels
(the first one, if the curve crosses more than once: said so). Its interval does not assume the
curve straight: it is every value of the axis where the curve could meet the threshold given each
level's interval, assuming only that between two neighbouring levels the curve stays within
their values (no peak or dip the levels miss). That is a level whose interval holds the
threshold, or anywhere between two neighbours whose intervals reach it. The interval's ends are
therefore levels: the grid bounds it, and levels added around the crossing narrow it (a straight
line between the levels 0.75 and 1 put the dose-response's crossing at 0.77 to 0.82; the levels
0.8 and 0.85, run, put it at 0.84). It covers what each level's interval covers (trained models
and probe scenes), and it reaches an end of the range where the end level's interval still holds
the threshold: a crossing beyond it cannot be ruled out.

Intervals of differences (two reliances at one level, one level against the baseline) run from
the lowest to the highest difference the two intervals allow: as wide as the difference's own
interval can be, whatever the two correlate by (the same probe scenes, the same models), and
usually wider. A bootstrap over the replicates alone would be narrower, and wrong: three models'
spread says nothing of the probe scenes they share, so a change no larger than the probes'
noise would read as a clear one.

Draws of the data (a study's `draws`): the variants that differ only in their draw are pooled
into one level (`pooled`, `pool`) before anything is compared, so every interval above then
covers the training data draw too; without draws it does not, as in each variant's results, and
the page says so.
"""

from __future__ import annotations

import csv
import dataclasses
import html
import io
import json
import math
import os
from pathlib import Path

import numpy as np

from .atomic import write_text
from .errors import CuelabError
from .probes.estimate import Estimate
from .results import FILE, Results, load_results
from .study import Study, Variant, _text

# --- the numbers -----------------------------------------------------------------------------

def measures(results: Results) -> dict[str, Estimate]:
    """Every measure of one variant's results, by name."""
    out = {"IID accuracy": results.iid.accuracy}
    for r in results.reliance:
        out[f"reliance on {r.factor}"] = r.reliance
    for c in results.of("conflict").values():
        a, b = c.factors
        out[f"preference for {a} over {b}"] = c.preference
    protocol = results.of("protocol").get("background")
    if protocol is not None and protocol.gap is not None:
        out["background gap"] = protocol.gap
    for w in results.worst_group:
        out[f"worst-group accuracy ({w.factor})"] = w.accuracy
    for f in results.robustness:
        out[f"accuracy drop: {f.factor} {f.condition}"] = f.drop
    return out


@dataclasses.dataclass
class Point:
    x: float
    variant: str
    estimate: Estimate


@dataclasses.dataclass
class Curve:
    axis: str
    series: str            # the other axes' values ("" for a study of one axis)
    measure: str
    points: list[Point]    # by x

    def values(self) -> np.ndarray:
        return np.array([np.nan if p.estimate.value is None else p.estimate.value
                         for p in self.points])


@dataclasses.dataclass
class Crossover:
    axis: str
    series: str
    what: str              # "preference for shape over color = 0.5", ...
    threshold: float
    x: float | None        # the curve's first crossing; None: it does not cross in the range
    between: tuple[float, float] | None  # the levels around that crossing
    low: float | None      # the levels between which it could cross (None: nowhere)
    high: float | None
    reaches: str           # "", "start", "end", "start and end": where it may cross beyond
    crossings: int         # at the point estimate
    direction: str         # increasing, decreasing, not monotone
    range: tuple[float, float]

    def text(self) -> str:
        lo, hi = self.range
        if self.reaches == "start and end":
            return (f"cannot tell where, or whether, it crosses: the curve's interval holds "
                    f"{self.threshold:g} at both ends of the range, {lo:g} and {hi:g}"
                    + (f" (the estimate crosses at {self.x:.3g})" if self.x is not None else ""))
        if self.x is None:
            text = f"no crossing in the range {lo:g} to {hi:g}"
            if self.low is not None:
                where = (f"at {self.low:g}" if self.low == self.high else
                         f"between {self.low:g} and {self.high:g}")
                text += (f", but the curve's intervals allow {self.threshold:g} {where}: a "
                         "crossing there cannot be ruled out")
            return text
        text = f"between {self.low:g} and {self.high:g}"
        if self.reaches:
            text += (f", and the curve's interval still holds {self.threshold:g} at the "
                     f"{self.reaches} of the range: it may cross beyond")
        text += (f" (a straight line between the levels {self.between[0]:g} and "
                 f"{self.between[1]:g} crosses at {self.x:.3g})")
        if self.crossings > 1:
            text += f"; the curve crosses {self.crossings} times, the first is given"
        return text


def crossing(x: np.ndarray, y: np.ndarray, threshold: float) -> tuple[float | None, int]:
    """The first x at which y crosses the threshold, by linear interpolation between levels
    (None if it does not), and how many times it crosses. A crossing is a change of side: a
    curve that only touches the threshold (two cues both at 0 at the end of the range) does not
    cross it; one that sits on it at a level between the two sides crosses there."""
    return _crossing(x, y, threshold)[0::2]


def _crossing(x: np.ndarray, y: np.ndarray, threshold: float
              ) -> tuple[float | None, tuple[float, float] | None, int]:
    """crossing(), with the levels around the first crossing."""
    keep = ~np.isnan(y)
    x, s = x[keep], y[keep] - threshold
    sides = [i for i in range(len(s)) if s[i] != 0]
    found, around, count = None, None, 0
    for a, b in zip(sides, sides[1:]):
        if s[a] * s[b] < 0:
            count += 1
            if found is None:
                around = (float(x[a]), float(x[b]))
                found = (x[a + 1] if b > a + 1  # on the threshold at the levels between
                         else x[a] + (x[b] - x[a]) * s[a] / (s[a] - s[b]))
    return (None if found is None else float(found)), around, count


def could_cross(x: np.ndarray, low: np.ndarray, high: np.ndarray, threshold: float
                ) -> tuple[float, float, str] | None:
    """The first and last level between which the curve could meet the threshold, and which
    ends of the range it may cross beyond; None if nowhere. A level could if its interval
    (low to high) holds the threshold; the stretch between two neighbouring levels could if
    their intervals together reach it. Nothing is assumed of the curve between two levels but
    that it stays within their values: not that it is straight."""
    keep = ~(np.isnan(low) | np.isnan(high))
    x, lo, hi = x[keep], low[keep] - threshold, high[keep] - threshold
    holds = (lo <= 0) & (hi >= 0)
    found = [float(v) for v in x[holds]]
    for i in range(len(x) - 1):
        if min(lo[i], lo[i + 1]) <= 0 <= max(hi[i], hi[i + 1]):
            found += [float(x[i]), float(x[i + 1])]
    if not found:
        return None
    ends = [name for name, at in (("start", 0), ("end", -1)) if holds[at]]
    return min(found), max(found), " and ".join(ends)


def _direction(y: np.ndarray) -> str:
    d = np.diff(y[~np.isnan(y)])
    if len(d) and (d >= 0).all() and (d > 0).any():
        return "increasing"
    if len(d) and (d <= 0).all() and (d < 0).any():
        return "decreasing"
    return "flat" if len(d) and (d == 0).all() else "not monotone"


def _bounds(e: Estimate) -> tuple[float, float, float]:
    """value, low, high (NaN where undefined; an estimate without an interval is its value)."""
    if e.value is None:
        return np.nan, np.nan, np.nan
    return (e.value, e.value if e.low is None else e.low, e.value if e.high is None else e.high)


def crossover(axis: str, series: str, what: str, x: np.ndarray, y: np.ndarray,
              low: np.ndarray, high: np.ndarray, threshold: float) -> Crossover:
    found, around, count = _crossing(x, y, threshold)
    where = could_cross(x, low, high, threshold)
    keep = x[~np.isnan(y)]
    return Crossover(axis, series, what, threshold, found, around,
                     *(where if where else (None, None, "")), count, _direction(y),
                     (float(keep.min()), float(keep.max())) if len(keep) else
                     (float(x.min()), float(x.max())))


# --- the study's curves ----------------------------------------------------------------------

@dataclasses.dataclass
class Finished:
    variant: Variant
    folder: Path
    measures: dict[str, Estimate]
    backgrounds: dict[str, Estimate]   # accuracy per test background
    confidence: float                  # of its intervals
    draws: int = 1                     # pooled over this many draws of the data


def collect(study: Study, runs: Path) -> tuple[list[Finished], list[Variant]]:
    finished, missing = [], []
    for v in study.variants():
        folder = runs / v.name
        if (folder / "evaluation" / FILE).is_file():
            results = load_results(folder / "evaluation")
            finished.append(Finished(v, folder, measures(results), test_backgrounds(results),
                                     results.bootstrap.confidence))
        else:
            missing.append(v)
    return finished, missing


def pooled(finished: list[Finished]) -> list[Finished]:
    """Each combination of the axes once, its finished draws pooled (`pool`); with one draw
    each, the variants as they are."""
    groups: dict[str, list[Finished]] = {}
    for f in finished:
        groups.setdefault(json.dumps(f.variant.values, sort_keys=True, default=str),
                          []).append(f)
    out = []
    for members in groups.values():
        first = min(members, key=lambda f: f.variant.draw)
        if len(members) == 1:
            out.append(first)
            continue
        names = [n for n in first.measures if all(n in f.measures for f in members)]
        backgrounds = [n for n in first.backgrounds if all(n in f.backgrounds for f in members)]
        out.append(Finished(first.variant, first.folder,
                            {n: pool([f.measures[n] for f in members], first.confidence)
                             for n in names},
                            {n: pool([f.backgrounds[n] for f in members], first.confidence)
                             for n in backgrounds}, first.confidence, len(members)))
    return out


def pool(draws: list[Estimate], confidence: float) -> Estimate:
    """One measure over independent draws of the data (each its own models and probe scenes):
    the mean of the draws' values, and the wider of two intervals: Student's t over the draws'
    values (their spread holds every source that differs between draws: the data, the models,
    the probe scenes) and the draws' own intervals combined as independent errors of the mean
    (so that a few draws that happen to agree do not make it narrower than what each knows).
    Clipped to [-1, 1]: every measure here is a share or a difference of shares."""
    from scipy import stats

    got = [e for e in draws if e.value is not None]
    n = sum(e.n for e in draws)
    per_model = [v for e in draws for v in e.per_model]
    if not got:
        return Estimate.of(np.nan, np.nan, np.nan, n, per_model)
    v, lo, hi = np.array([_bounds(e) for e in got]).T
    k, value = len(got), float(v.mean())
    low = value - math.sqrt(((v - lo) ** 2).sum()) / k
    high = value + math.sqrt(((hi - v) ** 2).sum()) / k
    if k > 1:
        half = stats.t.ppf((1 + confidence) / 2, k - 1) * v.std(ddof=1) / math.sqrt(k)
        low, high = min(low, value - half), max(high, value + half)
    return Estimate.of(value, max(low, -1.0), min(high, 1.0), n, per_model)


def curves(study: Study, finished: list[Finished]) -> list[Curve]:
    """Each measure against each numeric axis, one curve per combination of the other axes."""
    out = []
    names = list(dict.fromkeys(m for f in finished for m in f.measures))
    for axis in study.numeric_axes():
        for series, members in _series(study, finished, axis).items():
            members = sorted(members, key=lambda f: f.variant.values[axis])
            for name in names:
                points = [Point(float(f.variant.values[axis]), f.variant.name, f.measures[name])
                          for f in members if name in f.measures]
                if points:
                    out.append(Curve(axis, series, name, points))
    return out


@dataclasses.dataclass
class Change:
    axis: str
    series: str
    level: str             # against the axis's first level
    measure: str
    baseline: Estimate
    estimate: Estimate
    difference: float
    low: float             # the lowest difference the two intervals allow
    high: float

    @property
    def verdict(self) -> str:
        """Rose or fell only where the two levels' intervals do not overlap."""
        return "rose" if self.low > 0 else "fell" if self.high < 0 else "no clear change"


def difference(a: Estimate, b: Estimate) -> tuple[float, float, float]:
    """b - a, and the lowest and highest difference their intervals allow (the module's doc)."""
    va, la, ha = _bounds(a)
    vb, lb, hb = _bounds(b)
    return vb - va, lb - ha, hb - la


def changes(study: Study, finished: list[Finished]) -> list[Change]:
    """Each level of each categorical axis against its first, every measure, per series."""
    out = []
    for axis in study.categorical_axes():
        first = _text(study.spec.axes[axis][0])
        for series, members in _series(study, finished, axis).items():
            base = [f for f in members if _text(f.variant.values[axis]) == first]
            if not base:
                continue
            for f in members:
                if f is base[0]:
                    continue
                for name, e in f.measures.items():
                    b = base[0].measures.get(name)
                    if b is None or e.value is None or b.value is None:
                        continue
                    out.append(Change(axis, series, _text(f.variant.values[axis]), name, b, e,
                                      *difference(b, e)))
    return out


def _series(study: Study, finished: list[Finished], axis: str) -> dict[str, list[Finished]]:
    groups: dict[str, list[Finished]] = {}
    for f in finished:
        series = ", ".join(f"{k}={_text(v)}" for k, v in f.variant.values.items()
                           if k != axis and study.spec.combine == "crossed")
        groups.setdefault(series, []).append(f)
    return groups


def test_backgrounds(results: Results) -> dict[str, Estimate]:
    """Accuracy on each test background: the background sweep's levels, the protocol's
    variants."""
    out = {}
    sweep = results.of("sweep").get("background")
    if sweep is not None:
        for level, e in zip(sweep.levels, sweep.accuracy):
            out[f"background {level} (sweep)"] = e
    protocol = results.of("protocol").get("background")
    if protocol is not None:
        for variant, e in protocol.accuracy.items():
            out[f"{variant} (background protocol)"] = e
    return out


def crossovers(study: Study, all_curves: list[Curve]) -> list[Crossover]:
    out = []
    by_key = {(c.axis, c.series, c.measure): c for c in all_curves}
    for c in all_curves:
        if c.measure.startswith("preference for ") and len(c.points) >= 2:
            x = np.array([p.x for p in c.points])
            y, low, high = np.array([_bounds(p.estimate) for p in c.points]).T
            out.append(crossover(c.axis, c.series, f"{c.measure} = 0.5", x, y, low, high, 0.5))
    for (axis, series, name), a in by_key.items():
        if not name.startswith("reliance on "):
            continue
        for (axis2, series2, name2), b in by_key.items():
            if (axis2, series2) != (axis, series) or not name2.startswith("reliance on ") \
                    or name2 <= name:
                continue
            pairs = [(p, q) for p in a.points for q in b.points if p.variant == q.variant]
            if len(pairs) < 2:
                continue
            x = np.array([p.x for p, _ in pairs])
            y, low, high = np.array([difference(q.estimate, p.estimate) for p, q in pairs]).T
            fa, fb = name[len("reliance on "):], name2[len("reliance on "):]
            out.append(crossover(axis, series, f"reliance on {fa} = reliance on {fb}", x, y,
                                 low, high, 0.0))
    return out


@dataclasses.dataclass
class Analysis:
    """What a study's finished variants say: all that its page, its tables and MLflow show."""
    study: Study
    runs: Path
    finished: list[Finished]   # each variant, a draw of the data on its own
    missing: list[Variant]     # not finished
    levels: list[Finished]     # what is compared: each combination, its draws pooled
    curves: list[Curve]
    crossovers: list[Crossover]
    changes: list[Change]


def analyse(study: Study, runs: str | Path) -> Analysis:
    finished, missing = collect(study, Path(runs))
    levels = pooled(finished)
    found = curves(study, levels)
    return Analysis(study, Path(runs), finished, missing, levels, found,
                    crossovers(study, found), changes(study, levels))


# --- the page and the tables -----------------------------------------------------------------

def study_report(study: Study, runs: str | Path, out: str | Path) -> str:
    runs, out = Path(runs), Path(out)
    a = analyse(study, runs)
    if not a.finished:
        raise CuelabError(f"no finished variant of study '{study.name}' in {runs}: each "
                          f"variant's results go to {runs}/<variant>/evaluation/{FILE} (e.g. "
                          f"{runs}/{study.variants()[0].name}/evaluation/{FILE}); run the "
                          "variants first")
    tables = {out.with_name(f"{out.stem}-{name}.csv"): text for name, text in (
        ("measures", _measures_table(study, a.levels)),
        ("crossovers", _crossovers_table(a.crossovers)),
        ("changes", _changes_table(a.changes)),
        ("backgrounds", _backgrounds_table(study, a.levels)))}
    for path, text in tables.items():
        write_text(path, text)
    plots = out.with_name(f"{out.stem}-plots")
    for c in a.curves:  # `dvc plots show <file> -x <axis> -y value`
        write_text(plots / f"{_slug(c.measure)}{'--' + _slug(c.series) if c.series else ''}.csv",
                   _csv([[c.axis, "value", "low", "high"]]
                        + [[_num(p.x), _num(p.estimate.value), _num(p.estimate.low),
                            _num(p.estimate.high)] for p in c.points]))
    write_text(out, _page(a, out, list(tables)))
    found = a.crossovers
    return (f"wrote {out} ({len(a.finished)} of {len(a.finished) + len(a.missing)} variants "
            f"finished, {sum(c.x is not None for c in found)} crossings of {len(found)} curves, "
            f"{sum(c.x is not None and not c.reaches for c in found)} with an interval inside "
            f"the range, {sum(c.verdict in ('rose', 'fell') for c in a.changes)} "
            f"clear changes against a baseline level), "
            + ", ".join(str(p) for p in tables)
            + (f" and one curve per file in {plots} (dvc plots data)" if a.curves else ""))


def _slug(text: str) -> str:
    return "-".join("".join(ch if ch.isalnum() or ch == "." else " " for ch in text).split())


def _csv(rows: list[list]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue()


def _num(v: float | None) -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.6g}"


def _measures_table(study: Study, finished: list[Finished]) -> str:
    axes = list(study.spec.axes)
    rows = [["variant", *axes, "measure", "value", "low", "high", "n", "per_model", "draws"]]
    for f in finished:
        for name, e in f.measures.items():
            rows.append([f.variant.name, *(_text(f.variant.values[a]) for a in axes), name,
                         _num(e.value), _num(e.low), _num(e.high), e.n,
                         ";".join(_num(v) for v in e.per_model), f.draws])
    return _csv(rows)


def _changes_table(changed: list[Change]) -> str:
    rows = [["axis", "series", "level", "measure", "baseline", "value", "difference", "low",
             "high", "verdict"]]
    for c in changed:
        rows.append([c.axis, c.series, c.level, c.measure, _num(c.baseline.value),
                     _num(c.estimate.value), _num(c.difference), _num(c.low), _num(c.high),
                     c.verdict])
    return _csv(rows)


def _backgrounds_table(study: Study, finished: list[Finished]) -> str:
    axes = list(study.spec.axes)
    rows = [["variant", *axes, "test background", "accuracy", "low", "high", "draws"]]
    for f in finished:
        for name, e in f.backgrounds.items():
            rows.append([f.variant.name, *(_text(f.variant.values[a]) for a in axes), name,
                         _num(e.value), _num(e.low), _num(e.high), f.draws])
    return _csv(rows)


def _crossovers_table(found: list[Crossover]) -> str:
    rows = [["axis", "series", "crossover", "threshold", "at", "between_low", "between_high",
             "low", "high", "interval_reaches", "crossings", "direction", "range_low",
             "range_high"]]
    for c in found:
        rows.append([c.axis, c.series, c.what, _num(c.threshold), _num(c.x),
                     *(_num(v) for v in (c.between or (None, None))), _num(c.low),
                     _num(c.high), c.reaches, c.crossings, c.direction, _num(c.range[0]),
                     _num(c.range[1])])
    return _csv(rows)


STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; } td, th { padding: .25em .6em;
border-bottom: 1px solid #ddd; text-align: left; vertical-align: top; }
.charts { display: flex; flex-wrap: wrap; gap: 1em; } figure { margin: 0; }
figcaption { font-size: 13px; color: #444; max-width: 360px; } .muted { color: #777; }
"""
COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]


def _covers(study: Study) -> str:
    """What the intervals compared across levels cover, in words."""
    if study.spec.draws > 1:
        return (f"over trained models, probe scenes and, each level pooling its "
                f"{study.spec.draws} draws of the data, the training data draw")
    return ("over trained models and probe scenes, not the training data draw (`draws: 3` in "
            "the study file pools three)")


def _page(a: Analysis, out: Path, tables: list[Path]) -> str:
    e = html.escape
    study, finished, missing, found = a.study, a.finished, a.missing, a.crossovers
    spec = study.spec
    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
             f"<title>Study {e(study.name)}</title><style>{STYLE}</style></head><body>",
             f"<h1>Study: {e(study.name)}</h1>",
             f"<p>Base experiment <code>{e(str(study.base_path))}</code> "
             f"('{e(study.base.name)}'); axes ({spec.combine}): "
             + "; ".join(f"<code>{e(k)}</code> = {e(', '.join(map(_text, v)))}"
                         for k, v in spec.axes.items())
             + (("; every variant sets " + ", ".join(f"<code>{e(k)}</code>={e(_text(v))}"
                                                       for k, v in spec.set.items()))
                if spec.set else "")
             + f"; {spec.replicates} models per variant"
             + (f"; {spec.draws} draws of the data (seeds {study.variants()[0].experiment.seed}"
                f" on) per combination of the axes, each its own variant, pooled: a level's "
                f"value is the mean of its draws', its interval the wider of Student's t over "
                f"the draws and their own intervals combined" if spec.draws > 1 else "")
             + f". {len(finished)} of {len(finished) + len(missing)} variants finished. Every "
             f"interval is {_covers(study)}.</p>"]
    if not study.numeric_axes():
        pass  # nothing to cross over: the levels are set side by side below
    elif found:
        parts.append("<h2>Crossovers</h2>")
        parts.append("<p>Where a dose-response switches. The interval: between the levels "
                     "where the curve could meet the threshold given each level's interval (for "
                     "two reliances, their difference's, from the lowest to the highest "
                     "difference their intervals allow), assuming only that between two "
                     "neighbouring levels the curve stays within their values. It covers what "
                     "the levels' intervals cover. The grid bounds it: levels added inside it "
                     "narrow it, where their own intervals (more probe images, more models) "
                     "are narrow enough to fall clearly on one side. The point is where a "
                     "straight line between the two levels around it crosses: a guide, not a "
                     "measurement. An interval that reaches an end of the range means a "
                     "crossing beyond it cannot be ruled out.</p>"
                     "<table><tr>"
                     "<th>axis</th><th>curve</th><th>crossing</th><th>the curve</th></tr>")
        for c in found:
            parts.append(f"<tr><td><code>{e(c.axis)}</code></td><td>{e(c.what)}"
                         + (f" <span class='muted'>({e(c.series)})</span>" if c.series else "")
                         + f"</td><td>{e(c.text())}</td><td>{e(c.direction)}</td></tr>")
        parts.append("</table>")
    else:
        parts.append("<h2>Crossovers</h2><p>No cue conflict or pair of reliances to cross over "
                     "against a numeric axis.</p>")
    for axis in study.numeric_axes():
        parts.append(f"<h2>Against <code>{e(axis)}</code></h2><div class='charts'>")
        names = list(dict.fromkeys(c.measure for c in a.curves if c.axis == axis))
        for name in names:
            group = [c for c in a.curves if c.axis == axis and c.measure == name]
            marks = [c for c in found if c.axis == axis and c.x is not None
                     and c.what == f"{name} = 0.5"]
            parts.append(_chart(axis, name, group, marks))
        parts.append("</div>")
    for axis in study.categorical_axes():
        parts += _levels_section(study, axis, a.levels, a.changes)
    parts.append("<h2>Variants</h2><table><tr><th>variant</th><th>values</th><th>trace "
                 "report</th></tr>")
    for f in finished:
        trace = f.folder / "trace_report.html"
        link = (f"<a href='{e(os.path.relpath(trace, out.parent))}'>trace report</a>"
                if trace.is_file() else "<span class='muted'>none</span>")
        parts.append(f"<tr><td>{e(f.variant.name)}</td><td>{e(f.variant.label())}</td>"
                     f"<td>{link}</td></tr>")
    for v in missing:
        parts.append(f"<tr><td>{e(v.name)}</td><td>{e(v.label())}</td><td class='muted'>not "
                     f"finished: no {e(str(a.runs / v.name / 'evaluation' / FILE))}</td></tr>")
    parts.append("</table><p>Tables: " + ", ".join(
        f"<a href='{e(t.name)}'>{e(t.name)}</a>" for t in tables) + "</p></body></html>")
    return "\n".join(parts)


def _cell(e: Estimate | None) -> str:
    if e is None or e.value is None:
        return "<td class='muted'>-</td>"
    interval = f" <span class='muted'>[{e.low:.2f}, {e.high:.2f}]</span>" \
        if e.low is not None and e.high is not None else ""
    return f"<td>{e.value:.2f}{interval}</td>"


def _levels_section(study: Study, axis: str, finished: list[Finished],
                    changed: list[Change]) -> list[str]:
    """Each level beside the first: accuracy per test background, then every measure with its
    change and the verdict."""
    e = html.escape
    levels = [_text(v) for v in study.spec.axes[axis]]
    parts = [f"<h2>Levels of <code>{e(axis)}</code> side by side</h2>"]
    for series, members in _series(study, finished, axis).items():
        by_level = {_text(f.variant.values[axis]): f for f in members}
        shown = [lv for lv in levels if lv in by_level]
        head = "".join(f"<th>{e(lv)}</th>" for lv in shown)
        if series:
            parts.append(f"<h3>{e(series)}</h3>")
        names = list(dict.fromkeys(n for f in members for n in f.backgrounds))
        if names:
            parts.append("<p>Accuracy on each test background (the background sweep's levels "
                         "and the background protocol's variants), with its interval:</p>"
                         f"<table><tr><th>test background</th>{head}</tr>")
            for n in names:
                parts.append(f"<tr><td>{e(n)}</td>"
                             + "".join(_cell(by_level[lv].backgrounds.get(n)) for lv in shown)
                             + "</tr>")
            parts.append("</table>")
        mine = [c for c in changed if c.axis == axis and c.series == series]
        if not mine:
            continue
        parts.append(f"<p>Every measure at each level, and how it moved from "
                     f"<b>{e(levels[0])}</b>, with the lowest and highest difference the two "
                     f"levels' intervals allow; it is said "
                     f"to have <b>risen</b> or <b>fallen</b> only where they do not "
                     f"overlap, and otherwise to show no clear change. A mitigation that "
                     f"lowers one cue's reliance may raise another's: look for <b>rose</b>.</p>"
                     f"<table><tr><th>measure</th>{head}<th>change</th></tr>")
        for name in dict.fromkeys(c.measure for c in mine):
            row = [c for c in mine if c.measure == name]
            cells = "".join(_cell(by_level[lv].measures.get(name)) for lv in shown)
            verdicts = "; ".join(
                f"{e(c.level)}: {c.difference:+.2f}"
                + f" [{c.low:+.2f}, {c.high:+.2f}]"
                + (f" <b>{c.verdict}</b>" if c.verdict in ("rose", "fell")
                   else f" <span class='muted'>{e(c.verdict)}</span>") for c in row)
            parts.append(f"<tr><td>{e(name)}</td>{cells}<td>{verdicts}</td></tr>")
        parts.append("</table>")
    return parts


def _chart(axis: str, name: str, group: list[Curve], marks: list[Crossover]) -> str:
    """One measure against one axis: a line per curve, each level's interval as a bar."""
    w, h, left, right, top, bottom = 360, 220, 44, 12, 12, 34
    xs = [p.x for c in group for p in c.points]
    ys = [v for c in group for p in c.points
          for v in (p.estimate.value, p.estimate.low, p.estimate.high) if v is not None]
    if not ys:
        return ""
    x0, x1 = min(xs), max(xs)
    x1 = x1 if x1 > x0 else x0 + 1
    y0, y1 = min(0.0, min(ys)), max(ys)
    if y0 >= 0 and y1 <= 1:
        y1 = 1.0
    y1 = y1 if y1 > y0 else y0 + 1

    def px(x):
        return left + (x - x0) / (x1 - x0) * (w - left - right)

    def py(y):
        return top + (y1 - y) / (y1 - y0) * (h - top - bottom)

    svg = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{w}' height='{h}' role='img' "
           f"aria-label='{html.escape(name)} against {html.escape(axis)}'>",
           f"<line x1='{left}' y1='{py(y0):.1f}' x2='{w - right}' y2='{py(y0):.1f}' "
           "stroke='#999'/>",
           f"<line x1='{left}' y1='{top}' x2='{left}' y2='{h - bottom}' stroke='#999'/>"]
    for y in (y0, y1) + ((0.5,) if name.startswith("preference") else ()):
        svg.append(f"<text x='{left - 4}' y='{py(y) + 4:.1f}' font-size='11' "
                   f"text-anchor='end'>{y:.2g}</text>")
    if name.startswith("preference"):
        svg.append(f"<line x1='{left}' y1='{py(0.5):.1f}' x2='{w - right}' y2='{py(0.5):.1f}' "
                   "stroke='#aaa' stroke-dasharray='4 3'/>")
    for x in sorted(set(xs)):
        svg.append(f"<text x='{px(x):.1f}' y='{h - bottom + 14}' font-size='11' "
                   f"text-anchor='middle'>{x:g}</text>")
    for m in marks:
        if m.low is not None:
            svg.append(f"<rect x='{px(m.low):.1f}' y='{top}' width='{px(m.high) - px(m.low):.1f}'"
                       f" height='{h - top - bottom}' fill='#fc0' opacity='0.25'/>")
        svg.append(f"<line x1='{px(m.x):.1f}' y1='{top}' x2='{px(m.x):.1f}' y2='{h - bottom}' "
                   "stroke='#c90' stroke-width='1.5'/>")
    for i, c in enumerate(group):
        colour = COLOURS[i % len(COLOURS)]
        pts = [(px(p.x), py(p.estimate.value)) for p in c.points if p.estimate.value is not None]
        svg.append("<polyline fill='none' stroke='{}' stroke-width='1.5' points='{}'/>".format(
            colour, " ".join(f"{a:.1f},{b:.1f}" for a, b in pts)))
        for p in c.points:
            est = p.estimate
            if est.low is not None and est.high is not None:
                svg.append(f"<line x1='{px(p.x):.1f}' y1='{py(est.low):.1f}' x2='{px(p.x):.1f}' "
                           f"y2='{py(est.high):.1f}' stroke='{colour}'/>")
            if est.value is not None:
                svg.append(f"<circle cx='{px(p.x):.1f}' cy='{py(est.value):.1f}' r='2.5' "
                           f"fill='{colour}'><title>{html.escape(p.variant)}: {est.value:.3g} "
                           f"({_num(est.low)} to {_num(est.high)})</title></circle>")
    svg.append(f"<text x='{(w + left) / 2:.0f}' y='{h - 4}' font-size='11' "
               f"text-anchor='middle'>{html.escape(axis)}</text></svg>")
    legend = "; ".join(f"<span style='color:{COLOURS[i % len(COLOURS)]}'>&#9632;</span> "
                       f"{html.escape(c.series)}" for i, c in enumerate(group) if c.series)
    caption = (f"{html.escape(name)}, with each level's interval"
               + (f". {legend}" if legend else "")
               + "".join(f". Crossing 0.5: {html.escape(m.text())}" for m in marks))
    return f"<figure>{''.join(svg)}<figcaption>{caption}</figcaption></figure>"
