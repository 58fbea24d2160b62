"""Experiment -> scenes table: one row per image, holding every decision.

Rows come in groups: the train / val / test splits (drawn with the experiment's correlations), and
the probes (sweeps, cue conflicts, background protocol), drawn with every factor independent of the
label so that only the probed factor can explain a change in the model's decision.

Every draw comes from a named stream (`cuelab.streams`): a factor's values from the stream of its
name, the class from "label", the conflicting classes from "class_a" and "class_b", and so on,
for (experiment seed, group, row index). So a row does not depend on how many rows there are, on
how the table is later sharded, or on which other factors the registry holds. The table's columns,
ids and types are `cuelab.scenes`'.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd
from scipy.special import ndtri

from . import scenes as S
from .config import (PROTOCOL_FOREGROUNDS, Conflict, Experiment, Level, Sweep, load_experiment,
                     unpaired_levels)
from .factors import REGISTRY, Factor
from .scenes import render_ids, write_table
from .streams import Streams

Registry = Mapping[str, Factor]


# --- one factor, many rows -----------------------------------------------------------------------

def _from_levels(levels: list, weights: list | None, u: np.ndarray) -> np.ndarray:
    w = np.asarray(weights if weights is not None else [1.0] * len(levels), dtype=float)
    cum = np.cumsum(w) / w.sum()
    idx = np.minimum(np.searchsorted(cum, u, side="right"), len(levels) - 1)
    return np.asarray(levels, dtype=object)[idx]


def _from_range(lo: float, hi: float, distribution: str, integer: bool, u: np.ndarray):
    if integer:
        return np.minimum(np.floor(lo + (hi - lo + 1) * u), hi)
    if distribution == "loguniform":
        return np.exp(np.log(lo) + (np.log(hi) - np.log(lo)) * u)
    if distribution == "normal":  # centred in the range, which holds +-3 sigma; clipped
        return np.clip((lo + hi) / 2 + (hi - lo) / 6 * ndtri(u), lo, hi)
    return lo + (hi - lo) * u


def _typed(f: Factor, values: np.ndarray) -> np.ndarray:
    if f.is_categorical:
        return values.astype(object)
    return values.astype(np.int64 if f.integer else np.float64)


def _draw(exp: Experiment, f: Factor, labels: np.ndarray, streams: Streams, correlate: bool):
    """Values of one factor for rows with these class labels."""
    spec = exp.factors.get(f.name)
    if f.name == exp.label.factor:
        return np.asarray(exp.classes, dtype=object)[labels]
    if spec is None:  # not varied by this experiment: the registry default
        return _typed(f, np.full(len(labels), f.default, dtype=object))
    u_value = streams.uniform(f.name)
    if spec.levels is not None:
        values = _from_levels(spec.levels, spec.weights, u_value)
    else:
        values = _from_range(*spec.range, spec.distribution, f.integer, u_value)
    if correlate and spec.correlation is not None:
        paired = _paired_values(exp, f, labels, u_value)
        values = np.where(streams.uniform(f"{f.name}:paired") < spec.correlation.rho,
                          paired, values)
    return _typed(f, values)


def _paired_values(exp: Experiment, f: Factor, classes: np.ndarray, u: np.ndarray):
    """The value each class indicates: its paired level, or a draw inside its paired sub-range."""
    pairs = exp.pairs(f.name)
    if not any(isinstance(p, tuple) for p in pairs):
        return np.asarray(pairs, dtype=object)[classes]
    lo = np.array([p[0] for p in pairs])[classes]
    hi = np.array([p[1] for p in pairs])[classes]
    if f.integer:
        return np.minimum(np.floor(lo + (hi - lo + 1) * u), hi)
    return lo + (hi - lo) * u


def _draw_all(exp: Experiment, registry: Registry, labels: np.ndarray, streams: Streams,
              correlate: bool) -> dict:
    return {name: _draw(exp, f, labels, streams, correlate) for name, f in registry.items()}


def _classes(exp: Experiment, streams: Streams) -> np.ndarray:
    """Exactly balanced (cycling through the classes) unless the label has weights."""
    k = len(exp.classes)
    if exp.label.weights is None:
        return np.arange(streams.n) % k
    w = np.asarray(exp.label.weights)
    cum = np.cumsum(w) / w.sum()
    return np.minimum(np.searchsorted(cum, streams.uniform("label"), side="right"), k - 1)


# --- the groups of rows --------------------------------------------------------------------------

def _split_rows(exp: Experiment, registry: Registry, split: str, n: int) -> pd.DataFrame:
    """A split: drawn with the experiment's correlations, or without them for the balanced
    splits."""
    streams = Streams(exp.seed, split, n)
    labels = _classes(exp, streams)
    cols = _draw_all(exp, registry, labels, streams, correlate=split not in S.BALANCED_SPLITS)
    ids = [S.split_image_id(split, i) for i in range(n)]
    return _frame(registry, ids, split, labels, cols, streams.seeds("seed"))


def _sweep_rows(exp: Experiment, registry: Registry, sweep: Sweep) -> pd.DataFrame:
    name, levels, n = sweep.factor, exp.sweep_levels(sweep), sweep.base_scenes
    streams = Streams(exp.seed, f"sweep:{name}", n)
    labels = _classes(exp, streams)
    base = _draw_all(exp, registry, labels, streams, correlate=False)
    seeds = streams.seeds("seed")
    frames = []
    for j, level in enumerate(levels):  # every base scene at every level, all else equal
        cols = dict(base)
        cols[name] = _typed(registry[name], np.full(n, level, dtype=object))
        lab = S.class_of_label(exp, cols[name]) if name == exp.label.factor else labels
        frames.append(_frame(registry, [S.sweep_image_id(name, b, j) for b in range(n)],
                             "sweep", lab, cols, seeds, sweep=name, level=S.level_text(level),
                             base_id=[S.sweep_base_id(name, b) for b in range(n)]))
    return _base_by_base(frames, n)


def _conflict_rows(exp: Experiment, registry: Registry, conflict: Conflict) -> pd.DataFrame:
    """Factor a says class_a, factor b class_b; every other factor that indicates a class in
    training is held so that it favours neither: at a training level paired with no class when
    it has one ("none"), else balanced between the two, at class_a's level in half the images
    and class_b's in the other half ("a" / "b": the j-th balanced cue follows bit j of the row
    number, so the cues are balanced and independent of each other). The `cues` column records
    what each held factor says."""
    a, b = conflict.factors
    key, n, k = S.conflict_key(a, b), conflict.images, len(exp.classes)
    streams = Streams(exp.seed, f"conflict:{key}", n)
    class_a = streams.integers("class_a", k)
    class_b = (class_a + 1 + streams.integers("class_b", k - 1)) % k  # one of the others
    labels = _classes(exp, streams)
    cols = _draw_all(exp, registry, labels, streams, correlate=False)

    def say(name: str, cls: np.ndarray) -> None:
        nonlocal labels
        if name == exp.label.factor:
            cols[name], labels = np.asarray(exp.classes, dtype=object)[cls], cls
        else:
            f = registry[name]
            cols[name] = _typed(f, _paired_values(exp, f, cls, streams.uniform(name)))

    say(a, class_a)
    say(b, class_b)
    held, balanced = [], 0
    for g in S.third_cues(exp, conflict.factors):
        neutral = unpaired_levels(exp, g)
        if neutral:
            cols[g] = _typed(registry[g], _from_levels(neutral, None,
                                                       streams.uniform(f"{g}:neutral")))
            held.append(np.full(n, f"{g}=none", dtype=object))
        else:
            to_b = (np.arange(n) >> balanced) & 1 == 1
            say(g, np.where(to_b, class_b, class_a))
            held.append(np.where(to_b, f"{g}=b", f"{g}=a").astype(object))
            balanced += 1
    cues = (np.array([";".join(parts) for parts in zip(*held)], dtype=object) if held
            else np.full(n, "", dtype=object))
    ids = [S.conflict_image_id(key, r) for r in range(n)]
    return _frame(registry, ids, "conflict", labels, cols, streams.seeds("seed"), conflict=key,
                  class_a=class_a, class_b=class_b, cues=cues)


def _protocol_rows(exp: Experiment, registry: Registry) -> pd.DataFrame:
    """The ImageNet-9 backgrounds challenge: one foreground scene per base scene (every factor
    drawn independently of the class), its background and foreground varied as follows.
    original: the background drawn as training draws it for the class; only_fg: on black;
    only_fg_neutral: on the neutral training backdrop (`Experiment.neutral_background`);
    only_bg_b / only_bg_t / no_fg: the original's background with the object blacked out /
    filled with background tiles / removed (the `foreground` factor; the mask stays the
    object's); mixed_same / mixed_rand / mixed_next: the background drawn again (the same draws
    for the three) as for the same class, a random class, the next class (label + 1 mod k);
    worst_case: one row per training background (in factors.background's order, named in
    `level`)."""
    proto = exp.background_protocol
    n, k = proto.base_scenes, len(exp.classes)
    streams = Streams(exp.seed, "protocol", n)
    labels = _classes(exp, streams)
    base = _draw_all(exp, registry, labels, streams, correlate=False)
    if "foreground" in registry:  # the object itself, unless a variant says otherwise
        base["foreground"] = _typed(registry["foreground"], np.full(n, "object", dtype=object))
    background, again = registry["background"], streams.child("mixed")
    original = _draw(exp, background, labels, streams, correlate=True)
    backgrounds = {
        "original": original,
        "only_fg": np.full(n, "black", dtype=object),
        "mixed_same": _draw(exp, background, labels, again, correlate=True),
        "mixed_rand": _draw(exp, background, streams.integers("random_class", k), again,
                            correlate=True),
    }
    if "only_fg_neutral" in proto.variants:
        backgrounds["only_fg_neutral"] = np.full(n, exp.neutral_background(), dtype=object)
    backgrounds["mixed_next"] = _draw(exp, background, (labels + 1) % k, again, correlate=True)
    foregrounds = PROTOCOL_FOREGROUNDS
    for variant in foregrounds:
        backgrounds[variant] = original
    seeds = streams.seeds("seed")
    base_ids = [S.protocol_base_id(b) for b in range(n)]
    frames = []
    for variant in proto.variants:
        if variant == "worst_case":
            for j, level in enumerate(exp.factors["background"].levels):
                cols = dict(base, background=np.full(n, level, dtype=object))
                frames.append(_frame(
                    registry, [S.protocol_level_image_id(b, variant, j) for b in range(n)],
                    "protocol", labels, cols, seeds, variant=variant,
                    level=S.level_text(level), base_id=base_ids))
            continue
        cols = dict(base, background=backgrounds[variant])
        if variant in foregrounds:
            cols["foreground"] = np.full(n, foregrounds[variant], dtype=object)
        frames.append(_frame(registry, [S.protocol_image_id(b, variant) for b in range(n)],
                             "protocol", labels, cols, seeds, variant=variant,
                             base_id=base_ids))
    return _base_by_base(frames, n)


def _base_by_base(frames: list[pd.DataFrame], n: int) -> pd.DataFrame:
    """Frames of n base scenes each, reordered base scene by base scene, its versions side by
    side: easier to read and to shard."""
    out = pd.concat(frames, ignore_index=True)
    m = len(frames)
    order = np.lexsort((np.repeat(np.arange(m), n), np.tile(np.arange(n), m)))
    return out.iloc[order].reset_index(drop=True)


def _frame(registry: Registry, ids, split, labels, cols, seeds, **probe) -> pd.DataFrame:
    data = {"image_id": ids, "split": split, "label": np.asarray(labels, np.int64)}
    data.update((name, cols[name]) for name in registry)
    data["seed"] = seeds
    data.update((col, probe.get(col)) for col in S.PROBE_COLUMNS)
    return pd.DataFrame(data)


# Each probe kind's rows (cuelab.probes declares the rest of the kind: its statistics and page;
# its data-gate checks are cuelab.validate's PROBE_TABLES). Here, not in the kind's module, so
# that sampling does not depend on the evaluation's and the page's code.
PROBE_ROWS = {
    "sweep": lambda exp, registry: [_sweep_rows(exp, registry, s) for s in exp.sweeps],
    "conflict": lambda exp, registry: [_conflict_rows(exp, registry, c) for c in exp.conflicts],
    "protocol": lambda exp, registry: ([_protocol_rows(exp, registry)]
                                       if exp.background_protocol is not None else []),
}


# --- the table -----------------------------------------------------------------------------------

def sample_scenes(exp: Experiment, registry: Registry = REGISTRY) -> pd.DataFrame:
    """The scenes table of an experiment (pure: same experiment, same table). `registry`: the
    factors that make its columns (tests pass one with a factor added)."""
    frames = [_split_rows(exp, registry, s, getattr(exp.splits, s)) for s in S.ALL_SPLITS
              if getattr(exp.splits, s)]
    for rows in PROBE_ROWS.values():
        frames += rows(exp, registry)
    df = pd.concat(frames, ignore_index=True)
    df = df.astype({name: S.factor_dtype(f) for name, f in registry.items()
                    if f.is_categorical})
    df = df.astype(S.PROBE_TYPES)
    df.insert(df.columns.get_loc("seed") + 1, "render_id", render_ids(df, registry))
    return df[S.columns(registry)]


# --- the step ----------------------------------------------------------------------------------

@dataclass
class SampleSummary:
    out: Path
    rows: dict[str, int]
    renders: int
    seconds: float

    def __str__(self) -> str:
        groups = ", ".join(f"{k} {v}" for k, v in self.rows.items())
        return (f"sampled {sum(self.rows.values())} scenes ({groups}); {self.renders} distinct "
                f"renders; wrote {self.out} in {self.seconds:.1f} s")


def sample(params: str | Path | Experiment, out: str | Path) -> SampleSummary:
    """The `sample` step: experiment -> scenes table (Parquet) at `out`."""
    start = time.perf_counter()
    exp = params if isinstance(params, Experiment) else load_experiment(params)
    df = sample_scenes(exp)
    out = Path(out)
    write_table(df, out)
    rows = df["split"].value_counts(sort=False).to_dict()
    return SampleSummary(out, rows, int(df["render_id"].nunique()),
                         time.perf_counter() - start)
