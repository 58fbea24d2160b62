"""Experiment -> scenes table: one row per image, holding every decision.

Rows come in groups: the train / val / test splits (drawn with the experiment's correlations), and
the probes (sweeps, cue conflicts, background protocol), drawn with every factor independent of the
label so that only the probed factor can explain a change in the model's decision.

Every row's randomness comes from (experiment seed, group, row index) alone, as a fixed vector of
uniforms, so a row does not depend on how many rows there are or how the table is later sharded;
the factor values are then computed from those uniforms for all rows at once.
"""

from __future__ import annotations

import hashlib
import os
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import ndtr, ndtri

from .config import Experiment, Level, load_experiment
from .factors import FACTOR_NAMES, REGISTRY, SCENE_FACTOR_NAMES

# Per-row uniforms: two per factor (u_corr decides "paired level or independent draw", u_value
# draws the value), then the row's class and the two conflicting classes.
_SLOT = {name: 2 * i for i, name in enumerate(FACTOR_NAMES)}
_U_LABEL, _U_CLASS_A, _U_CLASS_B, _U_PROTOCOL = range(2 * len(FACTOR_NAMES), 2 * len(FACTOR_NAMES) + 4)
_N_UNIFORMS = _U_PROTOCOL + 1

ID_COLUMNS = ["image_id", "split", "label"]
PROBE_COLUMNS = ["sweep", "level", "base_id", "conflict", "class_a", "class_b", "variant"]
COLUMNS = ID_COLUMNS + list(FACTOR_NAMES) + ["seed", "render_id"] + PROBE_COLUMNS
SPLITS = ("train", "val", "test")


# --- randomness ----------------------------------------------------------------------------------

def _row_randomness(seed: int, group: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Uniforms (n, _N_UNIFORMS) and a 31-bit seed per row, from (seed, group, index) alone."""
    stream = zlib.crc32(group.encode())
    uniforms = np.empty((n, _N_UNIFORMS))
    seeds = np.empty(n, dtype=np.int64)
    for i in range(n):
        uniforms[i] = np.random.default_rng([seed, stream, i]).random(_N_UNIFORMS)
        seeds[i] = np.random.SeedSequence([seed, stream, i, 1]).generate_state(1)[0] >> 1
    return uniforms, seeds


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


def _typed(name: str, values: np.ndarray) -> np.ndarray:
    f = REGISTRY[name]
    if f.is_categorical:
        return values.astype(object)
    return values.astype(np.int64 if f.integer else np.float64)


def _draw(exp: Experiment, name: str, labels: np.ndarray, u: np.ndarray, correlate: bool):
    """Values of one factor for rows with these class labels and uniforms."""
    f, spec = REGISTRY[name], exp.factors.get(name)
    n = len(labels)
    if name == exp.label.factor:
        return np.asarray(exp.classes, dtype=object)[labels]
    if spec is None:  # not varied by this experiment: the registry default
        return _typed(name, np.full(n, f.default, dtype=object))
    u_corr, u_value = u[:, _SLOT[name]], u[:, _SLOT[name] + 1]
    if spec.levels is not None:
        values = _from_levels(spec.levels, spec.weights, u_value)
    else:
        values = _from_range(*spec.range, spec.distribution, f.integer, u_value)
    if correlate and spec.correlation is not None:
        paired = _paired_values(exp, name, labels, u_value)
        values = np.where(u_corr < spec.correlation.rho, paired, values)
    return _typed(name, values)


def _paired_values(exp: Experiment, name: str, classes: np.ndarray, u: np.ndarray):
    """The value each class indicates: its paired level, or a draw inside its paired sub-range."""
    pairs = exp.pairs(name)
    if not any(isinstance(p, tuple) for p in pairs):
        return np.asarray(pairs, dtype=object)[classes]
    lo = np.array([p[0] for p in pairs])[classes]
    hi = np.array([p[1] for p in pairs])[classes]
    if REGISTRY[name].integer:
        return np.minimum(np.floor(lo + (hi - lo + 1) * u), hi)
    return lo + (hi - lo) * u


def _draw_all(exp: Experiment, labels: np.ndarray, u: np.ndarray, correlate: bool) -> dict:
    return {name: _draw(exp, name, labels, u, correlate) for name in FACTOR_NAMES}


def _classes(exp: Experiment, u: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Exactly balanced (cycling through the classes) unless the label has weights."""
    k = len(exp.classes)
    if exp.label.weights is None:
        return index % k
    w = np.asarray(exp.label.weights)
    return np.minimum(np.searchsorted(np.cumsum(w) / w.sum(), u, side="right"), k - 1)


def _class_of(exp: Experiment, values: np.ndarray) -> np.ndarray:
    lookup = {c: i for i, c in enumerate(exp.classes)}
    return np.array([lookup[v] for v in values], dtype=np.int64)


# --- the groups of rows --------------------------------------------------------------------------

def _split_rows(exp: Experiment, split: str, n: int) -> pd.DataFrame:
    u, seeds = _row_randomness(exp.seed, split, n)
    labels = _classes(exp, u[:, _U_LABEL], np.arange(n))
    cols = _draw_all(exp, labels, u, correlate=True)
    ids = [f"{split}-{i:06d}" for i in range(n)]
    return _frame(ids, split, labels, cols, seeds)


def _sweep_rows(exp: Experiment, i: int) -> pd.DataFrame:
    sweep = exp.sweeps[i]
    name, levels = sweep.factor, exp.sweep_levels(sweep)
    n = sweep.base_scenes
    u, seeds = _row_randomness(exp.seed, f"sweep:{name}", n)
    labels = _classes(exp, u[:, _U_LABEL], np.arange(n))
    base = _draw_all(exp, labels, u, correlate=False)
    frames = []
    for j, level in enumerate(levels):  # every base scene at every level, all else equal
        cols = dict(base)
        cols[name] = _typed(name, np.full(n, level, dtype=object))
        lab = _class_of(exp, cols[name]) if name == exp.label.factor else labels
        ids = [f"sweep-{name}-{b:04d}-{j:02d}" for b in range(n)]
        frames.append(_frame(ids, "sweep", lab, cols, seeds, sweep=name, level=_fmt(level),
                             base_id=[f"sweep-{name}-{b:04d}" for b in range(n)]))
    # base scene by base scene, its levels side by side: easier to read and to shard
    out = pd.concat(frames, ignore_index=True)
    order = np.lexsort((np.repeat(np.arange(len(levels)), n), np.tile(np.arange(n), len(levels))))
    return out.iloc[order].reset_index(drop=True)


def _conflict_rows(exp: Experiment, i: int) -> pd.DataFrame:
    conflict = exp.conflicts[i]
    a, b = conflict.factors
    key = f"{a}_vs_{b}"
    n, k = conflict.images, len(exp.classes)
    u, seeds = _row_randomness(exp.seed, f"conflict:{key}", n)
    class_a = np.minimum((u[:, _U_CLASS_A] * k).astype(np.int64), k - 1)
    # class_b: uniformly one of the other k - 1 classes
    class_b = (class_a + 1 + np.minimum((u[:, _U_CLASS_B] * (k - 1)).astype(np.int64), k - 2)) % k
    labels = _classes(exp, u[:, _U_LABEL], np.arange(n))
    cols = _draw_all(exp, labels, u, correlate=False)
    for name, cls in ((a, class_a), (b, class_b)):
        if name == exp.label.factor:
            cols[name], labels = np.asarray(exp.classes, dtype=object)[cls], cls
        else:
            cols[name] = _typed(name, _paired_values(exp, name, cls, u[:, _SLOT[name] + 1]))
    ids = [f"conflict-{key}-{r:04d}" for r in range(n)]
    return _frame(ids, "conflict", labels, cols, seeds, conflict=key, class_a=class_a,
                  class_b=class_b)


def _protocol_rows(exp: Experiment) -> pd.DataFrame:
    """Mixed-Same / Mixed-Rand: the foreground scene fixed, the background drawn as it would be
    for the same class, or for a random class; Only-FG: a black background."""
    proto = exp.background_protocol
    n, k = proto.base_scenes, len(exp.classes)
    u, seeds = _row_randomness(exp.seed, "protocol", n)
    labels = _classes(exp, u[:, _U_LABEL], np.arange(n))
    base = _draw_all(exp, labels, u, correlate=False)
    u_again = u.copy()  # a second, independent draw of the background
    slot = _SLOT["background"]
    u_again[:, slot: slot + 2] = u[:, [_U_CLASS_A, _U_CLASS_B]]
    random_class = np.minimum((u[:, _U_PROTOCOL] * k).astype(np.int64), k - 1)
    backgrounds = {
        "original": _draw(exp, "background", labels, u, correlate=True),
        "only_fg": np.full(n, "black", dtype=object),
        "mixed_same": _draw(exp, "background", labels, u_again, correlate=True),
        "mixed_rand": _draw(exp, "background", random_class, u_again, correlate=True),
    }
    frames = []
    for variant in proto.variants:
        cols = dict(base, background=backgrounds[variant])
        ids = [f"protocol-{b:04d}-{variant}" for b in range(n)]
        frames.append(_frame(ids, "protocol", labels, cols, seeds, variant=variant,
                             base_id=[f"protocol-{b:04d}" for b in range(n)]))
    out = pd.concat(frames, ignore_index=True)
    m = len(proto.variants)
    order = np.lexsort((np.repeat(np.arange(m), n), np.tile(np.arange(n), m)))
    return out.iloc[order].reset_index(drop=True)


def _frame(ids, split, labels, cols, seeds, **probe) -> pd.DataFrame:
    data = {"image_id": ids, "split": split, "label": np.asarray(labels, np.int64)}
    data.update((name, cols[name]) for name in FACTOR_NAMES)
    data["seed"] = seeds
    data.update((col, probe.get(col)) for col in PROBE_COLUMNS)
    return pd.DataFrame(data)


def _fmt(level: Level) -> str:
    return level if isinstance(level, str) else f"{level:g}"


# --- the table -----------------------------------------------------------------------------------

_NULLABLE_TYPES = {"sweep": "string", "level": "string", "base_id": "string",
                   "conflict": "string", "variant": "string", "class_a": "Int64",
                   "class_b": "Int64"}


def sample_scenes(exp: Experiment) -> pd.DataFrame:
    """The scenes table of an experiment (pure: same experiment, same table)."""
    frames = [_split_rows(exp, s, getattr(exp.splits, s)) for s in SPLITS]
    frames += [_sweep_rows(exp, i) for i in range(len(exp.sweeps))]
    frames += [_conflict_rows(exp, i) for i in range(len(exp.conflicts))]
    if exp.background_protocol is not None:
        frames.append(_protocol_rows(exp))
    df = pd.concat(frames, ignore_index=True)
    for col in FACTOR_NAMES:
        if REGISTRY[col].is_categorical:
            df[col] = df[col].astype("string")
    df = df.astype(_NULLABLE_TYPES)
    df.insert(df.columns.get_loc("seed") + 1, "render_id", render_ids(df))
    return df[COLUMNS]


def render_ids(df: pd.DataFrame) -> list[str]:
    """Rows with the same scene and seed share one render (sensor sweeps reuse renders)."""
    columns = [df[c].astype(str).tolist() for c in SCENE_FACTOR_NAMES + ("seed",)]
    return [hashlib.blake2b("|".join(key).encode(), digest_size=8).hexdigest()
            for key in zip(*columns)]


def write_table(df: pd.DataFrame, out: Path) -> None:
    """Write Parquet atomically: a temporary name, then a rename."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        pq.write_table(pa.Table.from_pandas(df, preserve_index=False), tmp,
                       compression="zstd")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


def read_scenes(path: str | Path) -> pd.DataFrame:
    return pd.read_parquet(path)


# --- statistics the tests and the data gate check --------------------------------------------------

def agreement(df: pd.DataFrame, exp: Experiment, name: str) -> float:
    """Fraction of rows whose value of `name` is the one paired with the row's class."""
    pairs = exp.pairs(name)
    labels = df["label"].to_numpy()
    values = df[name].to_numpy()
    hit = np.zeros(len(df), dtype=bool)
    for c, p in enumerate(pairs):
        rows = labels == c
        if isinstance(p, tuple):
            hit[rows] = (values[rows] >= p[0]) & (values[rows] <= p[1])
        else:
            hit[rows] = values[rows] == p
    return float(hit.mean())


def expected_agreement(exp: Experiment, name: str) -> float:
    """rho + (1 - rho) * P(an independent draw lands on the paired value), averaged over classes."""
    spec, f = exp.factors[name], REGISTRY[name]
    rho, pairs = spec.correlation.rho, exp.pairs(name)
    k = len(pairs)
    w_class = np.asarray(exp.label.weights or [1.0] * k, dtype=float)
    w_class /= w_class.sum()
    chance = []
    for p in pairs:
        if spec.levels is not None:
            w = np.asarray(spec.weights or [1.0] * len(spec.levels), dtype=float)
            chance.append(w[list(spec.levels).index(p)] / w.sum())
        else:
            chance.append(_range_mass(spec, f.integer, *p))
    return float(np.dot(w_class, rho + (1 - rho) * np.asarray(chance)))


def _range_mass(spec, integer: bool, a: float, b: float) -> float:
    lo, hi = spec.range
    if integer:
        return (np.floor(b) - np.ceil(a) + 1) / (hi - lo + 1)
    if spec.distribution == "loguniform":
        return (np.log(b) - np.log(a)) / (np.log(hi) - np.log(lo))
    if spec.distribution == "normal":  # clipping puts the tails' mass on the end points
        mu, sd = (lo + hi) / 2, (hi - lo) / 6
        cdf_b = 1.0 if b >= hi else ndtr((b - mu) / sd)
        cdf_a = 0.0 if a <= lo else ndtr((a - mu) / sd)
        return cdf_b - cdf_a
    return (b - a) / (hi - lo)


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
