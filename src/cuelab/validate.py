"""The data gate: a Great Expectations suite built from the experiment, run before training.

Nothing broken may reach training. The experiment says what the data must look like (which
columns, which factor values, how many rows per split, how balanced, how correlated, which sweep
pairs and conflicts), so the suite is derived from it rather than written by hand. Each check is a
GX expectation over one table, every table keyed by an id column, so a failure names the
offending images (or splits, sweep pairs, ...):

    scenes        the scenes table: columns, types, no nulls, factor values in the domains the
                  experiment declares
    values        each distinct factor value inside its registry domain (`Factor.accepts`)
    images        one row per scene (plus any image without one): readable, unchanged since the
                  sensor step made it (its recorded content hash), right shape and dtype, not blank, the target visible, labels consistent, no content shared
                  across splits; per-split pixel statistics recorded
    splits        rows per split as specified
    balance       each class's share of each split, within sampling tolerance
    correlations  each correlated factor's agreement with the label, within tolerance of its rho
    sweep         every base scene at every level, all else equal
    conflict      conflict rows really in conflict
    protocol      every base scene in every background variant (worst case: on every training
                  background), only background and foreground changed as each variant says

Data Docs (HTML) go to reports/validation/, a JSON summary to metrics/validation.json. The Data
Docs work opened from disk with no network (their scripts and styles vendored: cuelab/web), and
their index says what was validated: the experiment, the commit, the dataset version.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import ndtr

from .atomic import replaced_dir, write_json
from .config import PROTOCOL_FOREGROUNDS, Experiment, load_experiment
from .data import content_hashes, read_index
from .errors import CuelabError
from .factors import FACTOR_NAMES, REGISTRY
from .scenes import (ALL_SPLITS, BALANCED_SPLITS, agreement, columns, conflict_key, indicates,
                     protocol_base_id, read_scenes, sweep_base_id, third_cues)

BLANK_STD = 2.0          # DN: a picture with less contrast than this is blank (constant)
CLEVR_VISIBLE = 200 / (320 * 240)  # CLEVR's generator: 200 visible pixels at 320x240
TOLERANCE_SIGMAS = 4     # sampling tolerance of shares and agreements, in binomial std devs
SHOW_IDS = 10            # offending ids listed per failed expectation


class ValidationFailed(CuelabError):
    """The data broke the experiment's expectations. Exit status 1: the pipeline stops."""

    exit_code = 1


@dataclass
class Failure:
    table: str
    expectation: str
    description: str
    ids: list[str]

    def __str__(self) -> str:
        shown = ", ".join(self.ids[:SHOW_IDS])
        more = f" and {len(self.ids) - SHOW_IDS} more" if len(self.ids) > SHOW_IDS else ""
        return f"  ✗ {self.table}: {self.description}\n      {shown}{more}"


@dataclass
class ValidationSummary:
    passed: bool
    expectations: int
    failures: list[Failure]
    images: int
    pixel_stats: dict[str, dict[str, float]]
    docs: Path
    summary: Path
    seconds: float = 0.0
    tables: dict[str, int] = field(default_factory=dict)
    unreadable: list[str] = field(default_factory=list)  # shards that could not be read, why

    def __str__(self) -> str:
        head = (f"validated {self.images} images and the scenes table: "
                f"{self.expectations - len(self.failures)}/{self.expectations} expectations "
                f"passed in {self.seconds:.1f} s")
        lines = [head]
        if self.failures:
            lines.append(f"{len(self.failures)} failed (offending ids below):")
            lines += [str(f) for f in self.failures]
        lines += [f"  unreadable: {u}; run `cuelab sensor` again" for u in self.unreadable]
        lines.append("per-split pixels (mean ± std over images): " + "; ".join(
            f"{s} {v['mean']:.1f} ± {v['std_of_means']:.1f}" for s, v in self.pixel_stats.items()))
        lines.append(f"Data Docs: {self.docs / 'index.html'}; summary: {self.summary}")
        return "\n".join(lines)


# --- the step ------------------------------------------------------------------------------------

def validate(params: str | Path | Experiment, scenes: str | Path | pd.DataFrame,
             images: str | Path, docs: str | Path = "reports/validation",
             summary: str | Path = "metrics/validation.json",
             progress: bool = True) -> ValidationSummary:
    """The `validate` step. Writes Data Docs and the summary either way; raises
    `ValidationFailed` (listing each failed expectation and its offending ids) if any fails."""
    start = time.perf_counter()
    exp = params if isinstance(params, Experiment) else load_experiment(params)
    table = scenes if isinstance(scenes, pd.DataFrame) else read_scenes(scenes)
    stats = image_stats(images, progress=progress)
    tables = build_tables(exp, table, stats)
    failures, n = run_suite(exp, tables, Path(docs), images=images)
    result = ValidationSummary(
        passed=not failures, expectations=n, failures=failures,
        images=int(tables["images"]["has_image"].sum()), pixel_stats=pixel_stats(tables["images"]),
        docs=Path(docs), summary=Path(summary), seconds=time.perf_counter() - start,
        tables={k: len(v) for k, v in tables.items()},
        unreadable=sorted(set(stats.get("problem", pd.Series(dtype=str))) - {""}))
    write_json(summary, {
        "passed": result.passed, "expectations": n, "failed": len(failures),
        "images": result.images, "pixel_stats": result.pixel_stats,
        "failures": [{"table": f.table, "expectation": f.expectation,
                      "description": f.description, "ids": f.ids} for f in failures]})
    if failures:
        raise ValidationFailed(str(result))
    return result


# --- per-image statistics ------------------------------------------------------------------------

def image_stats(root: str | Path, progress: bool = True) -> pd.DataFrame:
    """One row per image of the dataset: readable?, format, contrast, visible target pixels,
    mean intensity, content hash, and whether it is as the sensor step recorded it. A shard that cannot be read marks all its images unreadable."""
    from tqdm import tqdm

    root = Path(root)
    index = read_index(root)
    parts = []
    for shard, rows in tqdm(index.groupby("shard", sort=False), desc="validate images",
                            unit="shard", disable=not progress):
        part = rows[["image_id", "split", "label"]].rename(columns={"label": "stored_label"})
        recorded = (rows["content_hash"].to_numpy() if "content_hash" in rows
                    else np.full(len(rows), None))  # a dataset made before hashes were kept
        try:
            images = np.load(root / f"{shard}.images.npy", mmap_mode="r")
            masks = np.load(root / f"{shard}.masks.npy", mmap_mode="r")
            offsets = rows.offset.to_numpy()
            if offsets.max(initial=-1) >= min(len(images), len(masks)):
                raise ValueError(f"holds {len(images)} images and {len(masks)} masks, the "
                                 f"index points at offset {offsets.max()}")
            images, masks = np.asarray(images[offsets]), np.asarray(masks[offsets])
        except (OSError, ValueError) as e:
            parts.append(part.assign(has_image=False, problem=f"{root / shard}.*.npy: {e}"))
            continue
        flat = images.reshape(len(images), -1).astype(np.float32)
        parts.append(part.assign(
            has_image=True, problem="",
            image_format=_format(images), mask_format=_format(masks),
            std=flat.std(1), mean=flat.mean(1),
            visible_pixels=masks.reshape(len(masks), -1).sum(1) if masks.dtype == bool
            else np.nan,
            content=[hashlib.blake2b(im.tobytes(), digest_size=16).hexdigest()
                     for im in images],
            intact=np.asarray(content_hashes(images, masks), dtype=object) == recorded))
    return pd.concat(parts, ignore_index=True)


def _format(a: np.ndarray) -> str:
    return "x".join(map(str, a.shape[1:])) + f" {a.dtype}"


# --- the tables the suite runs over --------------------------------------------------------------

def build_tables(exp: Experiment, scenes: pd.DataFrame, stats: pd.DataFrame
                 ) -> dict[str, pd.DataFrame]:
    return {"scenes": scenes, "values": _values_table(scenes),
            "images": _images_table(exp, scenes, stats),
            "splits": _splits_table(exp, scenes), "balance": _balance_table(exp, scenes),
            "correlations": _correlations_table(exp, scenes),
            **{kind: table(exp, scenes) for kind, table in PROBE_TABLES.items()}}


def _values_table(scenes) -> pd.DataFrame:
    """Each distinct value of each factor, and whether the registry's domain allows it (the
    same test the schema and the renderer use)."""
    rows = []
    for name, f in REGISTRY.items():
        if name not in scenes:
            continue
        for value in scenes[name].drop_duplicates():
            v = value.item() if hasattr(value, "item") else value
            rows.append({"id": f"{name}={v!r}", "allowed": f.accepts(v)})
    return pd.DataFrame(rows, columns=["id", "allowed"])


def _images_table(exp, scenes, stats) -> pd.DataFrame:
    lookup = {c: i for i, c in enumerate(exp.classes)}
    ids = scenes[["image_id", "split", "label", exp.label.factor]].copy()
    ids["label_of_factor"] = ids[exp.label.factor].map(lookup).astype("Int64")
    ids["has_scene"] = True
    # without the object (No-FG, Only-BG-T...) a plain backdrop is a blank picture, rightly
    ids["shows_object"] = (scenes["foreground"] == "object").to_numpy(bool)
    t = ids.drop(columns=exp.label.factor).merge(
        stats.rename(columns={"split": "stored_split"}), on="image_id", how="outer")
    t["has_scene"] = t["has_scene"].fillna(False).astype(bool)
    t["has_image"] = t["has_image"].fillna(False).astype(bool)
    # an image that could not be read is named by has_image, not again here
    t["intact"] = t["intact"].fillna(True).astype(bool) if "intact" in t else True
    t["shows_object"] = t["shows_object"].fillna(True).astype(bool)
    t["split"] = t["split"].fillna(t["stored_split"])
    t["problem"] = t["problem"].fillna("no image in the dataset")
    # a content hash seen in more than one split: the same picture in training and test
    splits_per_content = t.groupby("content")["split"].nunique()
    t["splits_sharing_content"] = t["content"].map(splits_per_content).astype("Int64")
    return t


def _splits_table(exp, scenes) -> pd.DataFrame:
    counts = scenes["split"].value_counts()
    return pd.DataFrame({"id": list(ALL_SPLITS),
                         "rows": [int(counts.get(s, 0)) for s in ALL_SPLITS],
                         "expected": [getattr(exp.splits, s) for s in ALL_SPLITS]})


def _tolerance(p: float, n: int) -> float:
    return TOLERANCE_SIGMAS * np.sqrt(max(p * (1 - p), 1e-12) / max(n, 1)) + 1 / max(n, 1)


def _balance_table(exp, scenes) -> pd.DataFrame:
    k = len(exp.classes)
    w = np.asarray(exp.label.weights or [1.0] * k, float)
    w /= w.sum()
    rows = []
    for s in [s for s in ALL_SPLITS if getattr(exp.splits, s)]:
        labels = scenes.loc[scenes.split == s, "label"].to_numpy()
        n = len(labels)
        for c, name in enumerate(exp.classes):
            share = float(np.mean(labels == c)) if n else 0.0
            # without weights the sampler cycles through the classes: balanced to one row
            tol = _tolerance(w[c], n) if exp.label.weights else 1 / max(n, 1)
            rows.append({"id": f"{s}/{name}", "share": share, "expected": w[c],
                         "deviation": abs(share - w[c]), "tolerance": tol})
    return pd.DataFrame(rows)


def expected_agreement(exp: Experiment, name: str, correlated: bool = True) -> float:
    """rho + (1 - rho) * P(an independent draw lands on the paired value), averaged over classes
    (rho taken as 0 for the balanced splits): arithmetic on the experiment, not the sampler's
    code, so that it checks the sampler."""
    spec, f = exp.factors[name], REGISTRY[name]
    rho, pairs = (spec.correlation.rho if correlated else 0.0), exp.pairs(name)
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


def _correlations_table(exp, scenes) -> pd.DataFrame:
    rows = []
    for name, spec in exp.factors.items():
        if spec.correlation is None:
            continue
        for s in [s for s in ALL_SPLITS if getattr(exp.splits, s)]:
            p = expected_agreement(exp, name, correlated=s not in BALANCED_SPLITS)
            part = scenes[scenes.split == s]
            got = agreement(part, exp, name) if len(part) else 0.0
            rows.append({"id": f"{s}/{name}", "agreement": got, "expected": p,
                         "deviation": abs(got - p), "tolerance": _tolerance(p, len(part))})
    return pd.DataFrame(rows, columns=["id", "agreement", "expected", "deviation", "tolerance"])


def _sweeps_table(exp, scenes) -> pd.DataFrame:
    """One row per (sweep, base scene) the experiment asks for: its levels present, and how many
    different scenes its rows describe once the swept factor is set aside (1: all else equal)."""
    rows = []
    probe = scenes[scenes.split == "sweep"]
    for sweep in exp.sweeps:
        name = sweep.factor
        part = probe[probe.sweep == name]
        others = [c for c in FACTOR_NAMES if c != name
                  and not (name == exp.label.factor and c == "label")] + ["seed"]
        scene_key = pd.util.hash_pandas_object(part[others].astype(str), index=False)
        grouped = pd.DataFrame({"base_id": part.base_id, "level": part.level,
                                "scene": scene_key.to_numpy()}).groupby("base_id")
        levels, variants = grouped["level"].nunique(), grouped["scene"].nunique()
        for b in range(sweep.base_scenes):
            base = sweep_base_id(name, b)
            rows.append({"id": base, "levels": int(levels.get(base, 0)),
                         "expected_levels": len(exp.sweep_levels(sweep)),
                         "scenes": int(variants.get(base, 0))})
    return pd.DataFrame(rows, columns=["id", "levels", "expected_levels", "scenes"])


def _protocol_table(exp, scenes) -> pd.DataFrame:
    """One row per base scene of the background protocol: its variants and rows present (the
    worst case has one row per training background), how many different scenes its rows
    describe once background and foreground are set aside (1: only those change), and whether
    each variant's background and foreground are what it says: Only-FG on black, Only-FG-neutral
    on the neutral backdrop, Only-BG-B / Only-BG-T / No-FG on the original's background with the
    object blacked out / tiled over / removed, the worst case once on each training background,
    every other variant showing the object."""
    cols = ["id", "variants", "expected_variants", "rows", "expected_rows", "scenes",
            *PROTOCOL_CHECKS]
    proto = exp.background_protocol
    if proto is None:
        return pd.DataFrame(columns=cols)
    part = scenes[scenes.split == "protocol"]
    others = [c for c in FACTOR_NAMES if c not in ("background", "foreground")] + ["seed", "label"]
    scene_key = pd.util.hash_pandas_object(part[others].astype(str), index=False)
    training = [str(v) for v in exp.factors["background"].levels]
    variant = part.variant.astype(object).fillna("").to_numpy()
    background = part.background.astype(str).to_numpy()
    level = part.level.astype(object).fillna("").to_numpy()
    original = (pd.Series(np.where(variant == "original", background, None), index=part.index)
                .groupby(part.base_id.to_numpy()).transform("first").to_numpy())
    worst = variant == "worst_case"
    t = pd.DataFrame({
        "base_id": part.base_id.to_numpy(), "variant": variant, "scene": scene_key.to_numpy(),
        "only_fg_on_black": (variant != "only_fg") | (background == "black"),
        "only_fg_neutral_on_neutral": ((variant != "only_fg_neutral")
                                       | (background == str(exp.neutral_background()))),
        "only_bg_on_original": (~np.isin(variant, list(PROTOCOL_FOREGROUNDS))
                                | pd.isna(original) | (background == original)),
        "worst_level": np.where(worst, level, None),
        "worst_ok": ~worst | ((background == level) & np.isin(level, training)),
        "foreground_as_variant": (part.foreground.astype(str).to_numpy() == np.array(
            [PROTOCOL_FOREGROUNDS.get(v, "object") for v in variant], dtype=object)),
    })
    grouped = t.groupby("base_id")
    variants, n_rows, kinds = (grouped["variant"].nunique(), grouped.size(),
                               grouped["scene"].nunique())
    flags = grouped[["only_fg_on_black", "only_fg_neutral_on_neutral", "only_bg_on_original",
                     "worst_ok", "foreground_as_variant"]].all()
    worst_levels = t[worst].groupby("base_id")["worst_level"].agg(sorted)
    expected_rows = sum(len(training) if v == "worst_case" else 1 for v in proto.variants)
    rows = []
    for base in (protocol_base_id(b) for b in range(proto.base_scenes)):
        ok = flags.loc[base] if base in flags.index else pd.Series(True, index=flags.columns)
        every = ("worst_case" not in proto.variants
                 or worst_levels.get(base, []) == sorted(training))
        rows.append({"id": base, "variants": int(variants.get(base, 0)),
                     "expected_variants": len(proto.variants),
                     "rows": int(n_rows.get(base, 0)), "expected_rows": expected_rows,
                     "scenes": int(kinds.get(base, 0)),
                     "only_fg_on_black": bool(ok["only_fg_on_black"]),
                     "only_fg_neutral_on_neutral": bool(ok["only_fg_neutral_on_neutral"]),
                     "only_bg_on_original": bool(ok["only_bg_on_original"]),
                     "worst_case_on_every_background": bool(every and ok["worst_ok"]),
                     "foreground_as_variant": bool(ok["foreground_as_variant"])})
    return pd.DataFrame(rows, columns=cols)


def _held_as_recorded(exp, conflict, part: pd.DataFrame, ca: np.ndarray,
                      cb: np.ndarray) -> np.ndarray:
    """Each other factor that indicates a class is held as the `cues` column says: "none" at a
    level that indicates no class, "a" / "b" at the level of class_a / class_b."""
    k = len(exp.classes)
    recorded = [dict(p.split("=") for p in str(text).split(";") if p)
                for text in part.cues.fillna("")]
    ok = np.ones(len(part), bool)
    for g in third_cues(exp, conflict.factors):
        said = np.array([r.get(g, "?") for r in recorded])
        values = part[g].to_numpy(dtype=object)
        any_class = np.zeros(len(part), bool)
        for c in range(k):
            any_class |= indicates(exp, g, values, np.full(len(part), c))
        ok &= np.where(said == "none", ~any_class,
                       np.where(said == "a", indicates(exp, g, values, ca),
                                np.where(said == "b", indicates(exp, g, values, cb), False)))
    return ok


def _conflicts_table(exp, scenes) -> pd.DataFrame:
    """One row per conflict image: is it in conflict? Each cue's value indicates its own
    recorded class, the two classes differ, and the label is the label factor's class."""
    frames = []
    for conflict in exp.conflicts:
        a, b = conflict.factors
        part = scenes[(scenes.split == "conflict")
                      & (scenes.conflict == conflict_key(a, b))]
        ca, cb = part.class_a.to_numpy(np.int64), part.class_b.to_numpy(np.int64)
        label = part.label.to_numpy()
        ok = ((ca != cb) & indicates(exp, a, part[a].to_numpy(), ca)
              & indicates(exp, b, part[b].to_numpy(), cb))
        for name, cls in ((a, ca), (b, cb)):
            if name == exp.label.factor:
                ok &= label == cls
        ok &= _held_as_recorded(exp, conflict, part, ca, cb)
        frames.append(pd.DataFrame({"id": part.image_id.to_numpy(), "in_conflict": ok}))
    stray = scenes[(scenes.split == "conflict")
                   & ~scenes.conflict.isin([conflict_key(*c.factors) for c in exp.conflicts])]
    frames.append(pd.DataFrame({"id": stray.image_id.to_numpy(), "in_conflict": False}))
    return pd.concat(frames, ignore_index=True)


# The data gate's part of each probe kind (cuelab.probes declares the rest of the kind: its
# statistics and page; the rows are cuelab.sampling's PROBE_ROWS). Here, not in the kind's module,
# so that the data steps do not depend on the evaluation's and the page's code.
PROBE_TABLES = {"sweep": _sweeps_table, "conflict": _conflicts_table, "protocol": _protocol_table}
PROTOCOL_CHECKS = {  # the protocol table's columns that must be True, and what they say
    "only_fg_on_black": "Only-FG shows the object on black",
    "only_fg_neutral_on_neutral": "Only-FG-neutral shows the object on the neutral backdrop",
    "only_bg_on_original": "Only-BG-B, Only-BG-T and No-FG keep the original's background",
    "worst_case_on_every_background": "the worst case shows the object once on every training "
                                      "background",
    "foreground_as_variant": "each variant's foreground is as it says: blacked out in "
                             "Only-BG-B, tiled in Only-BG-T, removed in No-FG, else the object",
}


def pixel_stats(images: pd.DataFrame) -> dict[str, dict[str, float]]:
    ok = images[images.has_image]
    return {s: {"images": int(len(g)), "mean": float(g["mean"].mean()),
                "std_of_means": float(g["mean"].std(ddof=0)), "mean_contrast": float(g["std"].mean())}
            for s, g in ok.groupby("split", sort=False)}


# --- the suite -----------------------------------------------------------------------------------

def domains(exp: Experiment) -> dict[str, list | tuple[float, float]]:
    """Each factor's declared domain in this experiment: the levels (or range) the experiment
    gives it, else its registry default; plus its sweep levels, the protocol's black background
    and its foregrounds."""
    out = {}
    for name in FACTOR_NAMES:
        f, spec = REGISTRY[name], exp.factors.get(name)
        if name == exp.label.factor:
            values = list(exp.classes)
        elif spec is not None and spec.levels is not None:
            values = list(spec.levels)
        elif spec is not None and spec.range is not None:
            values = list(spec.range)
        else:
            values = [f.default]
        values += [v for s in exp.sweeps if s.factor == name for v in exp.sweep_levels(s)]
        if name == "background" and exp.background_protocol is not None:
            values.append("black")
        if name == "foreground" and exp.background_protocol is not None:
            values += ["object"] + [PROTOCOL_FOREGROUNDS[v] for v in
                                    exp.background_protocol.variants if v in PROTOCOL_FOREGROUNDS]
        out[name] = sorted(set(values)) if f.is_categorical else (min(values), max(values))
    return out


def _type_name(name: str) -> str:
    f = REGISTRY[name]
    return "str" if f.is_categorical else "int64" if f.integer else "float64"


def expectations(exp: Experiment, tables: dict[str, pd.DataFrame]) -> dict[str, list]:
    """The suite, table by table, derived from the experiment."""
    import great_expectations.expectations as E

    def within_tolerance(what: str) -> list:
        return [E.ExpectColumnPairValuesAToBeGreaterThanB(
            column_A="tolerance", column_B="deviation", or_equal=True, description=what)]

    return {
        "scenes": _scene_expectations(exp),
        "values": [E.ExpectColumnValuesToBeInSet(
            column="allowed", value_set=[True],
            description="every factor value inside its registry domain")],
        "images": _image_expectations(exp, tables["images"]),
        "splits": [E.ExpectColumnPairValuesToBeEqual(
            column_A="rows", column_B="expected", description="each split has its specified size")],
        "balance": within_tolerance(
            "each class's share of each split within tolerance of the label weights"),
        "correlations": within_tolerance(
            "each correlated factor agrees with the label as its rho says"),
        "sweep": [
            E.ExpectColumnPairValuesToBeEqual(column_A="levels", column_B="expected_levels",
                                              description="every base scene at every level"),
            E.ExpectColumnValuesToBeInSet(column="scenes", value_set=[1], description=(
                "sweep pairs change only the swept factor (all else equal)"))],
        "conflict": [E.ExpectColumnValuesToBeInSet(
            column="in_conflict", value_set=[True],
            description="conflict rows: each cue says its own class, they differ, and every "
                        "other cue is held as `cues` records")],
        "protocol": [
            E.ExpectColumnPairValuesToBeEqual(column_A="variants", column_B="expected_variants",
                                              description="every protocol base scene in every "
                                              "variant"),
            E.ExpectColumnPairValuesToBeEqual(column_A="rows", column_B="expected_rows",
                                              description="every protocol base scene has one row "
                                              "per variant and per worst-case background"),
            E.ExpectColumnValuesToBeInSet(column="scenes", value_set=[1], description=(
                "protocol variants change only the background and the foreground (all else "
                "equal)")),
            *[E.ExpectColumnValuesToBeInSet(column=column, value_set=[True], description=text)
              for column, text in PROTOCOL_CHECKS.items()]],
    }


def _scene_expectations(exp: Experiment) -> list:
    import great_expectations.expectations as E

    types = {"image_id": "str", "split": "str", "label": "int64", "seed": "int64",
             "render_id": "str", **{n: _type_name(n) for n in FACTOR_NAMES}}
    scenes = [E.ExpectTableColumnsToMatchOrderedList(
        column_list=columns(), description="the scenes table has exactly the cuelab columns")]
    for col, t in types.items():
        scenes.append(E.ExpectColumnValuesToBeOfType(
            column=col, type_=t, description=f"`{col}` is of type {t}"))
        scenes.append(E.ExpectColumnValuesToNotBeNull(
            column=col, description=f"`{col}` has a value in every row"))
    for name, domain in domains(exp).items():
        if isinstance(domain, tuple):
            scenes.append(E.ExpectColumnValuesToBeBetween(
                column=name, min_value=domain[0], max_value=domain[1],
                description=f"`{name}` within its declared range {domain[0]:g}..{domain[1]:g}"))
        else:
            scenes.append(E.ExpectColumnValuesToBeInSet(
                column=name, value_set=domain,
                description=f"`{name}` is one of its declared levels: {', '.join(map(str, domain))}"))
    scenes.append(E.ExpectColumnValuesToBeUnique(column="image_id",
                                                 description="image ids are unique"))
    return scenes


def _image_expectations(exp: Experiment, images: pd.DataFrame) -> list:
    import great_expectations.expectations as E
    from great_expectations.expectations.row_conditions import Column

    res = exp.render.resolution
    min_visible = int(np.ceil(CLEVR_VISIBLE * res * res))

    def in_set(column: str, value, description: str):
        return E.ExpectColumnValuesToBeInSet(column=column, value_set=[value],
                                             description=description)

    def equal(column: str, description: str):
        return E.ExpectColumnPairValuesToBeEqual(column_A="label", column_B=column,
                                                 ignore_row_if="either_value_is_missing",
                                                 description=description)
    checks = [
        in_set("has_image", True, "every scene has a readable image and mask"),
        in_set("has_scene", True, "every image has a row in the scenes table"),
        in_set("intact", True, "every image and mask is as the sensor step made it (the content "
               "hash it recorded in index.parquet; else swapped, replaced or edited since)"),
        in_set("image_format", f"{res}x{res}x3 uint8", f"images are {res}x{res}x3 uint8"),
        in_set("mask_format", f"{res}x{res} bool", f"masks are {res}x{res} bool"),
        E.ExpectColumnValuesToBeBetween(
            column="std", min_value=BLANK_STD,
            row_condition=Column("shows_object") == True,  # noqa: E712 (a GX condition)
            description=f"no blank images: pixel standard deviation at least {BLANK_STD:g} "
            "(where the object is in the picture)"),
        E.ExpectColumnValuesToBeBetween(column="visible_pixels", min_value=min_visible,
                                        description=f"the target shows in at least {min_visible} "
                                        f"pixels (CLEVR's 200 at 320x240, scaled to {res}x{res})"),
        equal("stored_label", "the dataset's label is the scene's label"),
        equal("label_of_factor", f"the label is the class of the `{exp.label.factor}` value"),
        in_set("splits_sharing_content", 1, "no identical image in two splits"),
    ]
    for s in images["split"].dropna().unique():
        checks.append(E.ExpectColumnMeanToBeBetween(
            column="mean", min_value=1, max_value=254, row_condition=Column("split") == s,
            description=f"{s}: mean pixel value recorded (neither all black nor all white)"))
    return checks


ID_COLUMN = {"scenes": "image_id", "images": "image_id"}


def run_suite(exp: Experiment, tables: dict[str, pd.DataFrame], docs: Path,
              images: str | Path | None = None) -> tuple[list[Failure], int]:
    """Run every expectation (one GX validation definition per table) and write the Data Docs
    to `docs` (built once, at the end: building them is the slow part), made to work with no
    network and headed by what they validated (`offline_docs`, `provenance`; `images`: the
    dataset whose version they name)."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
    source = ctx.data_sources.add_pandas("cuelab")
    with replaced_dir(docs) as tmp:
        ctx.add_data_docs_site(site_name="cuelab", site_config={
            "class_name": "SiteBuilder",
            "show_how_to_buttons": False,  # GX's tutorial buttons and pop-up: online docs
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            "store_backend": {"class_name": "TupleFilesystemStoreBackend",
                              "base_directory": str(tmp)}})
        failures, n = _run_expectations(ctx, source, exp, tables)
        ctx.build_data_docs(site_names=["cuelab"])
        offline_docs(tmp, banner=provenance(exp, failures, n, images))
    return failures, n


def _run_expectations(ctx, source, exp: Experiment, tables: dict[str, pd.DataFrame]
                      ) -> tuple[list[Failure], int]:
    import great_expectations as gx

    failures, n = [], 0
    for name, exps in expectations(exp, tables).items():
        key, table = ID_COLUMN.get(name, "id"), tables[name]
        batch = source.add_dataframe_asset(name).add_batch_definition_whole_dataframe(name)
        suite = ctx.suites.add(gx.ExpectationSuite(name=f"{exp.name}.{name}",
                                                   expectations=exps))
        definition = ctx.validation_definitions.add(
            gx.ValidationDefinition(name=name, data=batch, suite=suite))
        result = definition.run(batch_parameters={"dataframe": table}, result_format={
            "result_format": "COMPLETE", "unexpected_index_column_names": [key]})
        for r in result.results:
            n += 1
            if not r.success:
                failures.append(Failure(name, r.expectation_config.type,
                                        r.expectation_config.description or "",
                                        _offending(r, key, table)))
    return failures, n


def _offending(result, key: str, table: pd.DataFrame) -> list[str]:
    found = result.result.get("unexpected_index_list") or []
    ids = [str(row[key]) for row in found if isinstance(row, dict) and key in row]
    if ids:
        return list(dict.fromkeys(ids))
    if "observed_value" in result.result:  # a table-level expectation: say what was seen
        return [f"observed {result.result['observed_value']!r}"]
    return [f"{len(table)} rows"]


# --- Data Docs that work offline -----------------------------------------------------------------
# Great Expectations writes pages that load Bootstrap, bootstrap-table, jQuery, Font Awesome and
# Vega from CDNs (its templates offer no switch): with no network a page is unstyled and the
# index's list of validation results, which a script fills, is empty. Each such URL is rewritten
# to a copy vendored in cuelab/web/vendor (the same bytes: its MANIFEST.json records them, with
# their licences), copied beside the pages as static/vendor/.

VENDOR = Path(__file__).parent / "web" / "vendor"
DOCS_ASSETS = {  # what GX 1.x's templates load -> the vendored file, relative to VENDOR
    "https://cdn.jsdelivr.net/npm/vega@5": "vega-5.20.2/vega.min.js",
    "https://cdn.jsdelivr.net/npm/vega-lite@5": "vega-lite-5.2.0/vega-lite.min.js",
    "https://cdn.jsdelivr.net/npm/vega-embed@6": "vega-embed-6.18.2/vega-embed.min.js",
    "https://code.jquery.com/jquery-3.7.1.min.js": "jquery-3.7.1/jquery.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/popper.js/1.12.9/umd/popper.min.js":
        "popper.js-1.12.9/umd/popper.min.js",
    "https://stackpath.bootstrapcdn.com/bootstrap/4.3.1/js/bootstrap.min.js":
        "bootstrap-4.3.1/js/bootstrap.min.js",
    "https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css":
        "bootstrap-4.3.1/css/bootstrap.min.css",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.js":
        "bootstrap-table-1.19.1/bootstrap-table.min.js",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.css":
        "bootstrap-table-1.19.1/bootstrap-table.min.css",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/extensions/filter-control/"
    "bootstrap-table-filter-control.min.js":
        "bootstrap-table-1.19.1/extensions/filter-control/bootstrap-table-filter-control.min.js",
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/"
    "bootstrap-table-filter-control.css":
        "bootstrap-table-1.19.0/extensions/filter-control/bootstrap-table-filter-control.css",
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/"
    "bootstrap-table-filter-control.min.css":
        "bootstrap-table-1.19.0/extensions/filter-control/bootstrap-table-filter-control.min.css",
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/js/"
    "bootstrap-datepicker.min.js": "bootstrap-datepicker-1.9.0/js/bootstrap-datepicker.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/css/"
    "bootstrap-datepicker.min.css": "bootstrap-datepicker-1.9.0/css/bootstrap-datepicker.min.css",
    "https://cdn.jsdelivr.net/npm/@forevolve/bootstrap-dark@1.1.0/dist/css/"
    "bootstrap-prefers-dark.css": "bootstrap-dark-1.1.0/css/bootstrap-prefers-dark.min.css",
    "https://cdnjs.cloudflare.com/ajax/libs/font-awesome/6.6.0/css/all.min.css":
        "fontawesome-free-6.6.0/css/all.min.css",
}
# GX's logo, from its S3 bucket: the copy GX writes into static/images (the dark-mode logo too)
GX_IMAGES = "https://great-expectations-web-assets.s3.us-east-2.amazonaws.com/"
GX_LOGOS = {"logo-long.png": "logo-long.png", "full_logo_dark.png": "logo-long.png"}


def offline_docs(site: Path, banner: str = "") -> list[str]:
    """Make the Data Docs in `site` work opened from disk with no network: the vendored assets
    copied to static/vendor/, every page pointed at them by a relative path (their SRI
    attributes dropped: a file:// page cannot check them, and MANIFEST.json pins the bytes), GX's
    logo taken from static/images; `banner` (HTML) put at the top of the index page. Returns
    (and warns of) any URL a page would still fetch from the network: a newer GX's, to vendor
    (src/cuelab/web/update.py)."""
    import os
    import re
    import shutil
    import warnings

    static = site / "static"
    shutil.copytree(VENDOR, static / "vendor", dirs_exist_ok=True)
    left = set()
    for page in sorted(site.rglob("*.html")):
        up = Path(os.path.relpath(static, page.parent)).as_posix()

        def local(tag: re.Match) -> str:
            text = tag[0]
            url = re.search(r'\b(src|href)="([^"]+)"', text)
            if url and url[2] in DOCS_ASSETS:
                text = text.replace(url[0], f'{url[1]}="{up}/vendor/{DOCS_ASSETS[url[2]]}"')
                text = re.sub(r'\s+(?:integrity|crossorigin)="[^"]*"', "", text)
            return text

        html = re.sub(r"<(?:script|link)\b[^>]*>", local, page.read_text(encoding="utf-8"))
        # GX's own static files at the page's depth (its favicon link on a validation result
        # page climbs one folder too few)
        html = re.sub(r'\b((?:src|href)=")(?:\./|(?:\.\./)+)static/', rf"\1{up}/", html)
        html = re.sub(re.escape(GX_IMAGES) + r"([\w.-]+)(\?[^\"')\s]*)?",
                      lambda m: f"{up}/images/{GX_LOGOS[m[1]]}" if m[1] in GX_LOGOS else m[0],
                      html)
        if banner and page == site / "index.html":
            at = re.search(r'<div class="container-fluid', html) or re.search(r"<body[^>]*>",
                                                                             html)
            where = at.start() if at[0].startswith("<div") else at.end()
            html = html[:where] + banner + "\n" + html[where:]
        left |= set(re.findall(r'<(?:script|link|img|iframe|source|video|audio)\b[^>]*?\b'
                               r'(?:src|href)="((?:https?:)?//[^"]+)"', html))
        left |= set(re.findall(r"url\(['\"]?((?:https?:)?//[^'\")]+)", html))
        page.write_text(html, encoding="utf-8")
    if left:
        warnings.warn(f"the Data Docs in {site} still load from the network: "
                      f"{', '.join(sorted(left))} (vendor them: src/cuelab/web/update.py)",
                      stacklevel=2)
    return sorted(left)


def standalone_page(page: str | Path) -> str:
    """A Data Docs page (after `offline_docs`) as one file: its local scripts, stylesheets (their
    fonts and images as data: URLs) and images inlined. For a viewer that shows a single HTML
    file, e.g. Kubeflow's for a `dsl.HTML` artifact: the index's list and the banner work
    there; its links to the result pages need the site folder beside it."""
    import base64
    import mimetypes
    import re

    page = Path(page)

    def data_url(path: Path) -> str:
        kind = mimetypes.guess_type(path.name)[0] or {".woff2": "font/woff2"}.get(
            path.suffix, "application/octet-stream")
        return f"data:{kind};base64,{base64.b64encode(path.read_bytes()).decode()}"

    def local(ref: str, base: Path) -> Path | None:
        if re.match(r"[a-z]+:|//|#", ref):
            return None
        path = (base / ref.split("?")[0].split("#")[0]).resolve()
        return path if path.is_file() else None

    def css(text: str, base: Path) -> str:
        def inline(m: re.Match) -> str:
            path = local(m[2], base)
            return f"url({data_url(path)})" if path else m[0]
        return re.sub(r"""url\((['"]?)([^'")]+)\1\)""", inline, text)

    def script(m: re.Match) -> str:
        path = local(m[1], page.parent)
        if path is None:
            return m[0]
        code = path.read_text(encoding="utf-8").replace("</script", "<\\/script")
        return f"<script>/* {m[1]} */\n{code}\n</script>"

    def link(m: re.Match) -> str:
        href = re.search(r'\bhref="([^"]+)"', m[0])
        path = local(href[1], page.parent) if href else None
        if path is None:
            return m[0]
        if "stylesheet" in m[0]:
            text = css(path.read_text(encoding="utf-8"), path.parent)
            return f"<style>/* {href[1]} */\n{text}\n</style>"
        return m[0].replace(href[0], f'href="{data_url(path)}"')

    def image(m: re.Match) -> str:
        path = local(m[2], page.parent)
        return f"{m[1]}{data_url(path)}\"" if path else m[0]

    html = page.read_text(encoding="utf-8")
    html = re.sub(r'<script\b[^>]*\bsrc="([^"]+)"[^>]*>\s*</script>', script, html)
    html = re.sub(r"<link\b[^>]*>", link, html)
    html = re.sub(r'(<img\b[^>]*?\bsrc=")([^"]+)"', image, html)
    return css(html, page.parent)  # url(...) in the page's own <style> blocks


def provenance(exp: Experiment, failures: list[Failure], n: int,
               images: str | Path | None = None) -> str:
    """The index page's banner: the verdict, and what was validated: the experiment (and the
    DVC experiment it ran in), the commit of the code, the dataset's DVC version, when."""
    import datetime
    import html

    from . import tracking

    def code(text: str) -> str:
        return f"<code>{html.escape(text)}</code>"

    commit = tracking.git_commit()
    version = None
    if images is not None:
        try:
            version = tracking.dataset_version(images)
        except Exception:  # noqa: BLE001 (a banner, never a reason to fail the gate)
            version = None
    dvc = tracking.dvc_experiment()
    parts = [f"experiment {code(exp.name)}"]
    if dvc:
        changed = f" ({html.escape(dvc['dvc.changed'])})" if dvc.get("dvc.changed") else ""
        parts.append(f"DVC experiment {code(dvc['dvc.exp_name'])}{changed}")
    parts.append(f"commit {code(commit)}" if commit else "commit unknown (not a git checkout;"
                 " CUELAB_GIT_COMMIT names it in an image)")
    if images is not None:
        parts.append(f"dataset {code(version)}" if version else
                     f"dataset {code(str(images))} (version unknown)")
    parts.append(datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))
    met = n - len(failures)
    verdict = (f"<strong>cuelab data gate: passed</strong> ({met} of {n} expectations met)"
               if not failures else
               f"<strong>cuelab data gate: FAILED</strong> ({len(failures)} of {n} expectations"
               f" not met: {html.escape(', '.join(sorted({f.table for f in failures})))})")
    kind = "alert-success" if not failures else "alert-danger"
    return (f'<div id="cuelab-provenance" class="alert {kind} rounded-0 mb-0 px-5" '
            f'role="status">{verdict} &middot; {" &middot; ".join(parts)}</div>')
