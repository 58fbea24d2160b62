"""The scenes table: the contract between sampling and every later step.

One row per image, holding every decision: its id, group (a split or a probe), class, one column
per registry factor, the row's seed, the render it needs, and for probe rows what they probe.
This module says what the columns are, how ids are written, and which class a factor's value
indicates; the sampler writes tables, the renderer, the camera, the data gate, the evaluation and
the report read them, all through the names here.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

import numpy as np
import pandas as pd

from .errors import CuelabError
from .factors import REGISTRY, Factor

if TYPE_CHECKING:
    from .config import Experiment

SPLITS = ("train", "val", "test")              # drawn with the experiment's correlations
BALANCED_SPLITS = ("val_balanced", "test_balanced")  # every factor independent of the class
ALL_SPLITS = SPLITS + BALANCED_SPLITS
PROBE_GROUPS = ("sweep", "conflict", "protocol")  # with ALL_SPLITS, the values of `split`

ID_COLUMNS = ["image_id", "split", "label"]
ROW_COLUMNS = ["seed", "render_id"]
PROBE_COLUMNS = ["sweep", "level", "base_id", "conflict", "class_a", "class_b", "cues",
                 "variant"]
PROBE_TYPES = {"sweep": "string", "level": "string", "base_id": "string", "conflict": "string",
               "cues": "string", "variant": "string", "class_a": "Int64", "class_b": "Int64"}


def columns(registry: Mapping[str, Factor] = REGISTRY) -> list[str]:
    return ID_COLUMNS + list(registry) + ROW_COLUMNS + PROBE_COLUMNS


def factor_dtype(f: Factor) -> str:
    """The column type of a factor: string, int64 or float64."""
    return "string" if f.is_categorical else "int64" if f.integer else "float64"


# --- ids: how rows and probes are named ------------------------------------------------------------

def split_image_id(split: str, i: int) -> str:
    return f"{split}-{i:06d}"


def sweep_base_id(factor: str, base: int) -> str:
    return f"sweep-{factor}-{base:04d}"


def sweep_image_id(factor: str, base: int, level: int) -> str:
    return f"{sweep_base_id(factor, base)}-{level:02d}"


def conflict_key(a: str, b: str) -> str:
    """The name of the conflict between factors a and b (the `conflict` column)."""
    return f"{a}_vs_{b}"


def conflict_image_id(key: str, i: int) -> str:
    return f"conflict-{key}-{i:04d}"


def protocol_base_id(base: int) -> str:
    return f"protocol-{base:04d}"


def protocol_image_id(base: int, variant: str) -> str:
    return f"{protocol_base_id(base)}-{variant}"


def protocol_level_image_id(base: int, variant: str, level: int) -> str:
    """A row of a protocol variant with a row per level (worst_case: one per training
    background, `level` its index in factors.background.levels; the `level` column names it)."""
    return f"{protocol_image_id(base, variant)}-{level:02d}"


def level_text(value) -> str:
    """A sweep level as the `level` column writes it."""
    return value if isinstance(value, str) else f"{value:g}"


# --- which class a value indicates -------------------------------------------------------------------

def indicates(exp: Experiment, factor: str, values, classes) -> np.ndarray:
    """Does each value of `factor` indicate its row's class in `classes`? For the label factor:
    it is that class's level; for a correlated factor: the class's paired level, or inside its
    paired sub-range (edges included: integer sub-ranges share them). False for a factor that
    indicates no class. The one rule sampling, the data gate and the evaluation share."""
    values = np.asarray(values, dtype=object)
    classes = np.asarray(classes, dtype=np.int64)
    if factor == exp.label.factor:
        return values == np.asarray(exp.classes, dtype=object)[classes]
    if factor not in exp.factors or exp.factors[factor].correlation is None:
        return np.zeros(len(values), bool)
    pairs = exp.pairs(factor)
    if not any(isinstance(p, tuple) for p in pairs):
        return values == np.asarray(pairs, dtype=object)[classes]
    numbers = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(float)
    lo = np.array([p[0] for p in pairs])[classes]
    hi = np.array([p[1] for p in pairs])[classes]
    return (numbers >= lo) & (numbers <= hi)


def in_training(exp: Experiment, factor: str, value) -> bool:
    """Did training images have this value of `factor`? A class level of the label, one of the
    factor's levels, a value inside its range; for a factor the experiment does not vary, its
    registry default. Outside means: whatever the model does there, it never learned there."""
    f, spec = REGISTRY[factor], exp.factors.get(factor)
    if factor == exp.label.factor:
        return value in exp.classes
    known = [f.default] if spec is None else spec.levels
    if spec is not None and spec.correlation is not None and spec.correlation.rho == 1:
        # always the paired value: a level paired with no class never occurs
        k = len(exp.classes)
        return bool(indicates(exp, factor, [value] * k, np.arange(k)).any())
    if known is not None:
        if f.is_categorical:
            return value in known
        return any(np.isclose(float(value), float(v)) for v in known)
    lo, hi = spec.range
    return lo - 1e-9 <= float(value) <= hi + 1e-9


def training_text(exp: Experiment, factor: str) -> str:
    """What training had of a factor, in words: "levels red, green", "a range from 10 to 35",
    "only its default 0"."""
    f, spec = REGISTRY[factor], exp.factors.get(factor)
    if factor == exp.label.factor:
        return "the classes " + ", ".join(exp.classes)
    if spec is None:
        return f"only its default {level_text(f.default)}"
    if spec.levels is not None:
        return "the levels " + ", ".join(level_text(v) for v in spec.levels)
    return f"values from {level_text(spec.range[0])} to {level_text(spec.range[1])}"


def indicated_class(exp: Experiment, factor: str, value) -> int | None:
    """The one class a value of `factor` indicates in training (the label's own class; a
    correlated factor's paired level or sub-range), or None: no class, or more than one."""
    k = len(exp.classes)
    hits = np.flatnonzero(indicates(exp, factor, [value] * k, np.arange(k)))
    spec = exp.factors.get(factor)
    if factor != exp.label.factor and (spec is None or spec.correlation is None
                                       or spec.correlation.rho == 0):
        return None
    return int(hits[0]) if len(hits) == 1 else None


def third_cues(exp: Experiment, pair) -> list[str]:
    """The factors besides a conflict's two (`pair`) that indicate a class in training: the
    label factor, then every factor correlated with the class, in registry order."""
    a, b = pair
    cues = [exp.label.factor] + [name for name in REGISTRY
                                 if exp.factors.get(name) is not None
                                 and exp.factors[name].correlation is not None
                                 and exp.factors[name].correlation.rho > 0]
    return [g for g in cues if g not in (a, b)]


def class_of_label(exp: Experiment, values) -> np.ndarray:
    """The class index of each value of the label factor."""
    lookup = {c: i for i, c in enumerate(exp.classes)}
    return np.array([lookup[v] for v in values], dtype=np.int64)


def agreement(df: pd.DataFrame, exp: Experiment, factor: str) -> float:
    """Fraction of rows whose value of `factor` indicates the row's own class."""
    if not len(df):
        return 0.0
    return float(np.mean(indicates(exp, factor, df[factor].to_numpy(),
                                   df["label"].to_numpy())))


# --- which render a row needs --------------------------------------------------------------------------

def render_ids(df: pd.DataFrame, registry: Mapping[str, Factor] = REGISTRY) -> list[str]:
    """Rows that ask for the same picture share one render: the hash of the scene factors that
    differ from their registry default (so a new factor left at its default changes no id),
    and of the seed where a factor draws from it (where an occluder stands)."""
    scene = [f for f in registry.values() if f.stage == "scene"]
    parts = []
    for f in scene:
        values = df[f.name]
        varied = (values != f.default).to_numpy()
        text = np.full(len(df), "", dtype=object)
        if varied.any():  # only those written out: most factors sit at their default
            text[varied] = (f.name + "=" + values[varied].astype(str) + "|").to_numpy(object)
        parts.append(text)
    seeded = np.zeros(len(df), bool)
    for f in scene:
        if f.seeded:
            seeded |= (df[f.name] != f.default).to_numpy()
    parts.append(np.where(seeded, "seed=" + df["seed"].astype(str), ""))
    keys = np.sum(parts, axis=0) if parts else np.full(len(df), "", object)
    return [hashlib.blake2b(k.encode(), digest_size=8).hexdigest() for k in keys]


# --- checked at the door -----------------------------------------------------------------------------

def check_values(table: pd.DataFrame, names, purpose: str,
                 registry: Mapping[str, Factor] = REGISTRY) -> None:
    """Every value of these factor columns in its registry domain (`Factor.accepts`, the test the
    schema and the data gate use too), every file an open value names there; else a
    `CuelabError` naming the rows, values and what is allowed."""
    problems = []
    for name in names:
        if name not in table:
            problems.append(f"column {name!r} is missing from the scenes table (sampled before "
                            "that factor existed?): run `cuelab sample` again")
            continue
        f = registry[name]
        firsts = table[name].drop_duplicates()  # each distinct value once, at its first row
        if not f.is_categorical:  # numbers: a vectorised pre-test, then the registry's own
            values = pd.to_numeric(firsts, errors="coerce")
            whole = (values == values.round()) if f.integer else True
            firsts = firsts[~(values.between(f.low, f.high) & whole)]
        for row, value in firsts.items():
            v = value.item() if hasattr(value, "item") else value
            where = f"row {row} ({table.at[row, 'image_id']}): {name} = {v!r}"
            if problem := f.problem(v):
                problems.append(f"{where}: not allowed; {problem}")
            elif file_problem := f.file_problem(v):
                problems.append(f"{where}: {file_problem}")
    if problems:
        shown = problems[:10] + ([f"... and {len(problems) - 10} more"] if len(problems) > 10
                                 else [])
        raise CuelabError(f"the scenes table cannot be {purpose}:\n  - " + "\n  - ".join(shown))


# --- files --------------------------------------------------------------------------------------------------

def write_table(df: pd.DataFrame, out: str | Path) -> None:
    """Write Parquet atomically: a temporary name, then a rename."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        pq.write_table(pa.Table.from_pandas(df, preserve_index=False), tmp, compression="zstd")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


def read_scenes(path: str | Path, registry: Mapping[str, Factor] = REGISTRY) -> pd.DataFrame:
    """A scenes table, checked at the door (`read_table`): a missing, unreadable or foreign file,
    or one without every column of this cuelab's table, is a `CuelabError` that names it."""
    return read_table(path, "scenes table", columns(registry), "cuelab sample")


def read_table(path: str | Path, what: str, needs, command: str) -> pd.DataFrame:
    """A Parquet table checked at the door, the one reader of the tables the steps hand on (the
    scenes table, the dataset's index): a `CuelabError` naming the file, what is wrong with it
    (missing; not a whole Parquet file, and what it holds instead; the columns `needs` lists
    that it lacks) and `command`, the step that writes it."""
    import pyarrow as pa

    from .inputs import holds, said

    path = Path(path)
    if not path.is_file():
        there = "a folder, not a file" if path.is_dir() else f"no {what} there"
        raise CuelabError(f"{path}: {there}; run `{command}` first")
    try:
        df = pd.read_parquet(path)
    except (pa.ArrowException, OSError, ValueError) as e:  # what pyarrow raises for bad bytes
        reason = said(e).replace("Could not open Parquet input source '<Buffer>': ", "")
        raise CuelabError(f"{path}: not a readable {what}: it holds {holds(path)} ({reason}); "
                          f"run `{command}` again") from None
    missing = [c for c in needs if c not in df.columns]
    if missing:
        has = ", ".join(map(str, df.columns[:8])) + (", ..." if len(df.columns) > 8 else "")
        raise CuelabError(f"{path}: not a {what} of this cuelab: missing column"
                          f"{'s' if len(missing) > 1 else ''} {', '.join(missing[:8])}"
                          f"{', ...' if len(missing) > 8 else ''} (it has {has or 'none'}); "
                          f"run `{command}` again")
    return df
