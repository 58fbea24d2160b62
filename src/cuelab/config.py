"""The experiment: the pydantic schema that `params.yaml` is checked against.

Structure (types, ranges, unknown keys) is checked by pydantic; the rules that need the factor
registry (domains, pairings, which factors can conflict) by `Experiment._check_against_registry`.
Either way the user gets an `ExperimentError` naming the field path, the value and what is allowed.
"""

from __future__ import annotations

import datetime
import difflib
import functools
import os
import types
import typing
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import ExperimentError, Problem, Words
from .factors import REGISTRY, Factor

PositiveInt = Annotated[int, Field(strict=True, gt=0)]
# Practical bounds: far beyond any sensible experiment, well before one exhausts the machine.
MAX_ROWS = 10_000_000            # images per split or probe
DEFAULT_MAX_IMAGES = 200_000     # images in all (Experiment.max_images): the default's 5,780
                                 # take minutes on 2 CPU cores; 200,000 take hours
Count = Annotated[int, Field(strict=True, gt=0, le=MAX_ROWS)]
Weight = Annotated[float, Field(gt=0, le=1e6, allow_inf_nan=False)]
Level = str | float
Interval = tuple[float, float]
# The background protocol's variants (the ImageNet-9 backgrounds challenge, Xiao et al. 2020), in
# this order; what each row holds: cuelab.sampling._protocol_rows.
PROTOCOL_VARIANTS = ("original", "only_fg", "only_fg_neutral", "only_bg_b", "only_bg_t", "no_fg",
                     "mixed_same", "mixed_rand", "mixed_next", "worst_case")
# The default: every variant that needs nothing but a background factor. only_fg_neutral needs a
# neutral training backdrop too (`Experiment.neutral_background`): it is asked for by name.
DEFAULT_PROTOCOL_VARIANTS = tuple(v for v in PROTOCOL_VARIANTS if v != "only_fg_neutral")
# The variants that change the foreground (the `foreground` factor), and to what; the others
# show the object.
PROTOCOL_FOREGROUNDS = {"only_bg_b": "black", "only_bg_t": "tiled", "no_fg": "removed"}


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- what the data is ---------------------------------------------------------------------------

class Label(Strict):
    """Which factor defines the class, and its levels (class i is levels[i])."""
    factor: str = "shape"
    levels: list[str] = Field(min_length=2)
    weights: list[Weight] | None = None  # default: exactly balanced


class Correlation(Strict):
    """With probability rho the factor takes the level paired with the row's class; otherwise it
    is drawn independently. pairs: class -> level (categorical, or a numeric value) or [lo, hi]
    (numeric). Without pairs, class i is paired with the i-th level, or the i-th equal slice of
    the range."""
    rho: float = Field(ge=0, le=1, allow_inf_nan=False)
    pairs: dict[str, Level | Interval] | None = None


class FactorSpec(Strict):
    """A categorical factor gives levels (and optional weights); a numeric one gives a range and
    a distribution, or a list of discrete levels."""
    levels: list[Level] | None = Field(default=None, min_length=1)
    weights: list[Weight] | None = None
    range: Interval | None = None
    distribution: Literal["uniform", "loguniform", "normal"] = "uniform"
    correlation: Correlation | None = None


class Splits(Strict):
    """train, val and test are drawn with the experiment's correlations; the balanced splits
    with every factor independent of the class (each class with every level alike, as the
    probes are): test_balanced gives the worst-group accuracy, val_balanced can select the
    epoch (train.select_on)."""
    train: Count
    val: Count
    test: Count
    val_balanced: int = Field(default=0, ge=0, le=MAX_ROWS)
    test_balanced: int = Field(default=0, ge=0, le=MAX_ROWS)


class Sweep(Strict):
    """Paired counterfactuals: each base scene rendered at every level of one factor."""
    factor: str
    levels: list[Level] | None = Field(default=None, min_length=2)
    points: int | None = Field(default=None, ge=2, le=100)  # numeric: evenly spaced levels
    range: Interval | None = None                          # ... over this range
    base_scenes: Count = 50
    reference: Level | None = None  # the level flip rates compare against (default: see
                                    # cuelab.probes.sweep.reference_levels)


class Conflict(Strict):
    """Cue-conflict images: factor a indicates one class, factor b another."""
    factors: tuple[str, str]
    images: Count = 200


class BackgroundProtocol(Strict):
    """ImageNet-9 backgrounds challenge: the same foreground on different backgrounds, and the
    background without the foreground. Variants: original; only_fg (the object on black);
    only_fg_neutral (on `neutral`); only_bg_b, only_bg_t, no_fg (the original's background with
    the object blacked out, filled with background tiles, removed); mixed_same, mixed_rand,
    mixed_next (a background drawn for the object's class, a random class, the next class);
    worst_case (one image per training background). Default: all but only_fg_neutral."""
    variants: list[Literal[PROTOCOL_VARIANTS]] = Field(  # type: ignore[valid-type]
        default=list(DEFAULT_PROTOCOL_VARIANTS), min_length=1)
    base_scenes: Count = 100
    # only_fg_neutral's backdrop: a level of factors.background that indicates no class; default:
    # the first such level (`Experiment.neutral_background`)
    neutral: str | None = None


# --- how each step runs (later steps extend these) -------------------------------------------

class RenderSettings(Strict):
    engine: Literal["cycles"] = "cycles"
    resolution: int = Field(default=64, ge=16, le=1024)
    samples: int = Field(default=4, ge=1, le=4096)
    denoise: bool = False
    max_bounces: int = Field(default=4, ge=0, le=32)
    device: Literal["auto", "cpu", "gpu"] = "auto"
    chunk_size: int = Field(default=64, ge=1, le=4096, description="renders per output file")


class SensorSettings(Strict):
    """The simulated camera's constants; the per-image settings are sensor factors."""
    base_iso: int = Field(default=100, ge=50, le=800)
    # real sensors: a full well of 5,000-100,000 electrons, read noise of 1-20 electrons
    full_well: float = Field(default=20000.0, ge=100, le=1e7, allow_inf_nan=False,
                             description="electrons at base ISO")
    read_noise: float = Field(default=3.0, ge=0, le=1000, allow_inf_nan=False,
                              description="electrons RMS at base ISO")
    bit_depth: int = Field(default=12, ge=8, le=16)


class Augment(Strict):
    flip: bool = True
    crop: bool = True
    color_jitter: float = Field(default=0.0, ge=0, le=1, allow_inf_nan=False)


class TrainSettings(Strict):
    model: Literal["simple_cnn", "resnet18"] = "simple_cnn"
    width: int = Field(default=32, ge=4, le=512)
    epochs: int = Field(default=15, ge=1, le=1000)
    batch_size: int = Field(default=64, ge=1, le=4096)
    optimizer: Literal["sgd", "adamw"] = "adamw"
    lr: float = Field(default=1e-3, gt=0, le=10, allow_inf_nan=False)
    weight_decay: float = Field(default=1e-4, ge=0, le=1, allow_inf_nan=False)
    schedule: Literal["constant", "cosine", "step"] = "cosine"
    augment: Augment = Augment()
    # random_background: each object pasted onto another training image's background;
    # adversarial_background: onto a background a generator learns to make as misleading as it
    # can (Cruz & Cardoso), trained against the classifier
    mitigation: Literal["none", "random_background", "adversarial_background"] = "none"
    # the share of training images whose background is swapped (1: all, so the background says
    # nothing about the class; less leaves part of the shortcut)
    swap_probability: float = Field(default=1.0, ge=0, le=1, allow_inf_nan=False)
    replicates: int = Field(default=3, ge=1, le=100)  # models trained on the same data
    seed: int = Field(default=0, ge=0, lt=2**63)  # initialisation and batch order of replicate
                                                  # r come from (seed, r); the data keeps the
                                                  # experiment's seed
    select_on: Literal["val", "val_balanced"] = "val"  # the split that picks the kept epoch
    # epochs without reaching the best validation accuracy before stopping; a short run first
    # learns the shortcut (colour), then the shape: stopping at the first plateau is too soon
    patience: int = Field(default=10, ge=1)
    device: Literal["auto", "cpu", "gpu"] = "auto"  # auto: a CUDA GPU when present


class EvaluateSettings(Strict):
    bootstrap: int = Field(default=1000, ge=100, le=100_000)
    seed: int = Field(default=0, ge=0, lt=2**63)  # the bootstrap's own
    confidence: float = Field(default=0.95, gt=0.5, lt=1, allow_inf_nan=False)
    attribution_images: int = Field(default=64, ge=0, le=100_000)
    occlusion_patch: int = Field(default=8, ge=2, le=1024)  # and at most render.resolution


# --- the experiment ------------------------------------------------------------------------------

class Experiment(Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")
    seed: int = Field(strict=True, ge=0, lt=2**63)
    label: Label
    factors: dict[str, FactorSpec] = {}
    splits: Splits
    sweeps: list[Sweep] = []
    conflicts: list[Conflict] = []
    background_protocol: BackgroundProtocol | None = None
    render: RenderSettings = RenderSettings()
    sensor: SensorSettings = SensorSettings()
    train: TrainSettings = TrainSettings()
    evaluate: EvaluateSettings = EvaluateSettings()
    # Images the scenes table may hold, all groups together (`row_counts`): a guard against a
    # typo's extra zeros, raised by the user on purpose. No step reads it: it changes no data.
    max_images: int = Field(default=DEFAULT_MAX_IMAGES, strict=True, ge=1, le=10**9)

    # -- derived views used by the sampler and the reports --

    @property
    def classes(self) -> list[str]:
        return list(self.label.levels)

    def pairs(self, name: str) -> list[Level | Interval]:
        """The level (or sub-range) paired with each class, in class order."""
        spec = self.factors[name]
        corr = spec.correlation
        assert corr is not None, f"{name} has no correlation"
        if corr.pairs is not None:
            return [_as_pair(corr.pairs[c]) for c in self.classes]
        if spec.levels is not None:
            return list(spec.levels[: len(self.classes)])
        lo, hi = spec.range
        k = len(self.classes)
        return [(lo + (hi - lo) * i / k, lo + (hi - lo) * (i + 1) / k) for i in range(k)]

    def indicates_class(self, name: str) -> bool:
        """Can this factor say which class an image is (needed for cue conflicts)?"""
        if name == self.label.factor:
            return True
        spec = self.factors.get(name)
        return spec is not None and spec.correlation is not None

    def sweep_levels(self, sweep: Sweep) -> list[Level]:
        if sweep.levels is not None:
            return list(sweep.levels)
        f = REGISTRY[sweep.factor]
        spec = self.factors.get(sweep.factor)
        if f.is_categorical:
            if sweep.factor == self.label.factor:
                return list(self.classes)
            return list(spec.levels) if spec else list(f.levels)
        if spec is not None and spec.levels is not None and sweep.points is None \
                and sweep.range is None:  # a numeric factor with levels: those
            return list(spec.levels)
        lo, hi = sweep.range or (spec.range if spec and spec.range else (f.low, f.high))
        n = sweep.points or 5
        values = [lo + (hi - lo) * i / (n - 1) for i in range(n)]
        return [round(v) for v in values] if f.integer else values

    def row_counts(self) -> dict[str, int]:
        """Images per group of the scenes table."""
        counts = {k: v for k, v in self.splits.model_dump().items() if v}  # balanced: if any
        counts["sweep"] = sum(s.base_scenes * len(self.sweep_levels(s)) for s in self.sweeps)
        counts["conflict"] = sum(c.images for c in self.conflicts)
        bp = self.background_protocol
        counts["protocol"] = bp.base_scenes * sum(
            len(self.factors["background"].levels) if v == "worst_case" else 1
            for v in bp.variants) if bp else 0
        return counts

    def neutral_background(self) -> str | None:
        """The backdrop of the protocol's only_fg_neutral: background_protocol.neutral, else the
        first training level of factors.background paired with no class (without pairs, class i
        pairs with the i-th level: a 5th level with 4 classes is unpaired). None if there is
        none (then the schema refuses only_fg_neutral)."""
        bp = self.background_protocol
        if bp is not None and bp.neutral is not None:
            return bp.neutral
        unpaired = unpaired_levels(self, "background")
        return unpaired[0] if unpaired else None

    # -- the rules that need the registry --

    @model_validator(mode="after")
    def _check_against_registry(self) -> "Experiment":
        problems = list(_registry_problems(self))
        if not problems:  # counting the rows needs an experiment that is sound otherwise
            problems = list(_size_problems(self))
        if problems:
            # Not a ValueError: pydantic would fold it into one anonymous message.
            raise ExperimentError(problems[:MAX_PROBLEMS], more=len(problems[MAX_PROBLEMS:]))
        return self


def _as_pair(p: Level | Interval) -> Level | Interval:
    return tuple(p) if isinstance(p, (list, tuple)) else p


def _registry_problems(exp: Experiment) -> typing.Iterator[Problem]:
    label_factor = REGISTRY.get(exp.label.factor)
    label_problems = list(_label_problems(exp, label_factor))
    if label_problems:
        # the rest is checked against the classes: against wrong ones it would only echo them
        # (pairs "missing" a class that is a typo)
        yield from label_problems
        return
    for name, spec in exp.factors.items():
        yield from _factor_problems(exp, name, spec)
    yield from _sweep_problems(exp)
    yield from _conflict_problems(exp)
    yield from _protocol_problems(exp)
    if exp.evaluate.occlusion_patch > exp.render.resolution:
        yield Problem("evaluate.occlusion_patch", exp.evaluate.occlusion_patch,
                      f"at most render.resolution ({exp.render.resolution} px)")
    if exp.train.select_on == "val_balanced" and exp.splits.val_balanced == 0:
        yield Problem("train.select_on", "val_balanced", "needs a balanced validation split: "
                      "set splits.val_balanced (e.g. 300), or select_on: val")


def _size_problems(exp: Experiment) -> typing.Iterator[Problem]:
    counts = exp.row_counts()
    total = sum(counts.values())
    if total > exp.max_images:
        limit = exp.max_images if "max_images" in exp.model_fields_set else \
            Words(f"{exp.max_images} (the default)")
        yield Problem("max_images", limit, f"the experiment asks for {total} images ("
                      + ", ".join(f"{k} {v}" for k, v in counts.items() if v)
                      + f"), more than max_images ({exp.max_images}); raise max_images to at "
                      f"least {total} if you mean it")


def _label_problems(exp: Experiment, label_factor: Factor | None) -> typing.Iterator[Problem]:
    lab = exp.label
    k = len(lab.levels)
    if label_factor is None:
        yield _unknown_factor("label.factor", lab.factor)
        return
    if not label_factor.is_categorical:
        yield Problem("label.factor", lab.factor, "the label must be a categorical factor: "
                      + ", ".join(f.name for f in REGISTRY.values() if f.is_categorical))
        return
    for i, level in enumerate(lab.levels):
        if problem := _level_problem(label_factor, level):
            yield Problem(f"label.levels[{i}]", level, problem)
    if len(set(lab.levels)) != k:
        yield Problem("label.levels", lab.levels, "each class level must appear once")
    if lab.weights is not None and len(lab.weights) != k:
        yield Problem("label.weights", lab.weights, f"one positive weight per class ({k})")


def _factor_problems(exp: Experiment, name: str, spec: FactorSpec) -> typing.Iterator[Problem]:
    path = f"factors.{name}"
    f = REGISTRY.get(name)
    if f is None:
        yield _unknown_factor(path, name)
    elif name == exp.label.factor:
        yield Problem(path, name, f"'{name}' is the label: its levels are set by "
                      "label.levels; remove it from factors")
    else:
        yield from _spec_problems(path, f, spec, exp)


def _sweep_problems(exp: Experiment) -> typing.Iterator[Problem]:
    lab = exp.label
    for i, sw in enumerate(exp.sweeps):
        path = f"sweeps[{i}]"
        f = REGISTRY.get(sw.factor)
        if f is None:
            yield _unknown_factor(f"{path}.factor", sw.factor)
            continue
        if f.is_categorical and (sw.points is not None or sw.range is not None):
            yield Problem(path, sw.factor, "points and range are for numeric factors; give "
                          "levels for a categorical one")
        for j, level in enumerate(sw.levels or []):
            if sw.factor == lab.factor and level not in lab.levels:
                yield Problem(f"{path}.levels[{j}]", level, "a sweep over the label factor "
                              "stays within the classes: " + ", ".join(lab.levels))
            elif problem := _level_problem(f, level):
                yield Problem(f"{path}.levels[{j}]", level, problem)
        if sw.range is not None:
            yield from _range_problems(f"{path}.range", f, sw.range)
        if sw.reference is not None and not any(
                sw.reference == lv for lv in exp.sweep_levels(sw)):
            yield Problem(f"{path}.reference", sw.reference, "one of the sweep's levels: "
                          + ", ".join(str(lv) for lv in exp.sweep_levels(sw)))
    seen = [sw.factor for sw in exp.sweeps]
    for name in sorted({n for n in seen if seen.count(n) > 1}):
        yield Problem("sweeps", name, "one sweep per factor (merge their levels)")


def _conflict_problems(exp: Experiment) -> typing.Iterator[Problem]:
    for i, c in enumerate(exp.conflicts):
        path = f"conflicts[{i}].factors"
        a, b = c.factors
        if a == b:
            yield Problem(path, list(c.factors), "two different factors")
        for name in (a, b):
            if name not in REGISTRY:
                yield _unknown_factor(path, name)
            elif not exp.indicates_class(name):
                yield Problem(path, name, f"'{name}' does not indicate a class: use the label "
                              f"factor ({exp.label.factor}) or a factor with a correlation "
                              f"(factors.{name}.correlation)")
            elif name != exp.label.factor and _shared_pairs(exp, name):
                yield Problem(f"factors.{name}.correlation.pairs", _shared_pairs(exp, name),
                              f"a conflict on {name} needs each class paired with a level of "
                              "its own (these classes share one)")


def _shared_pairs(exp: Experiment, name: str) -> list[str]:
    """The classes whose paired level another class has too (no conflict between them)."""
    try:
        pairs = exp.pairs(name)
    except (KeyError, TypeError, ValueError):
        return []  # pairs that are wrong in themselves: said where they are checked
    return [c for c, p in zip(exp.classes, pairs) if pairs.count(p) > 1]


def _protocol_problems(exp: Experiment) -> typing.Iterator[Problem]:
    bp = exp.background_protocol
    if bp is None:
        return
    bg = exp.factors.get("background")
    if exp.label.factor == "background" or bg is None or bg.levels is None or len(bg.levels) < 2:
        yield Problem("background_protocol", "enabled", "the background protocol swaps "
                      "backgrounds: give factors.background at least two levels (and "
                      "a correlation, for Mixed-Same and Mixed-Rand to differ)")
        return
    for v in sorted({v for v in bp.variants if bp.variants.count(v) > 1}):
        yield Problem("background_protocol.variants", v, "each variant once")
    unpaired = unpaired_levels(exp, "background")
    rho_one = bg.correlation is not None and bg.correlation.rho >= 1
    if bp.neutral is not None and bp.neutral not in bg.levels:
        yield Problem("background_protocol.neutral", bp.neutral, "one of factors.background."
                      "levels: " + ", ".join(map(str, bg.levels)))
    elif bp.neutral is not None and bp.neutral not in unpaired:
        yield Problem("background_protocol.neutral", bp.neutral, (
            "a level training images show with every class alike; with "
            "factors.background.correlation.rho 1 none is: lower rho" if rho_one else
            f"a level no class pairs with ('{bp.neutral}' is paired with a class by "
            "factors.background.correlation): "
            + (f"e.g. {unpaired[0]}" if unpaired else "add one to factors.background.levels")))
    elif "only_fg_neutral" in bp.variants and exp.neutral_background() is None:
        yield Problem("background_protocol.variants", "only_fg_neutral", (
            "only_fg_neutral needs a neutral backdrop (background_protocol.neutral, by default "
            "the first level of factors.background that training images show with every class "
            "alike), and there is none"
            + (" (with rho 1 training shows only the paired levels): lower "
               "factors.background.correlation.rho, or leave only_fg_neutral out" if rho_one else
               f": add a level no class pairs with to factors.background.levels (with "
               f"{len(exp.classes)} classes and no pairs: a level number "
               f"{len(exp.classes) + 1}), or leave only_fg_neutral out")))


def unpaired_levels(exp: Experiment, factor: str) -> list:
    """The levels of a factor that training images show with every class alike: every level
    without a correlation; with one (and rho below 1) the levels no class pairs with; none for
    the label, a factor without levels, or rho 1 (training then shows only the paired levels).
    The one rule for a neutral level: the protocol's neutral backdrop, the held cues of a
    conflict. Robust to a broken correlation (it is reported on its own)."""
    spec = exp.factors.get(factor)
    if exp.label.factor == factor or spec is None or spec.levels is None:
        return []
    corr = spec.correlation
    if corr is None:
        return list(spec.levels)
    if corr.rho >= 1:
        return []
    paired = (list(corr.pairs.values()) if corr.pairs is not None
              else list(spec.levels[:len(exp.classes)]))
    return [lv for lv in spec.levels if lv not in paired]


def _spec_problems(path: str, f: Factor, spec: FactorSpec, exp: Experiment):
    if f.is_categorical:
        if spec.range is not None:  # one message: a range in place of levels
            yield Problem(f"{path}.range", list(spec.range), f"{f.name} is categorical: give "
                          "levels, not a range: " + f.domain_text())
        elif spec.levels is None:
            yield Problem(f"{path}.levels", Problem.MISSING, f"{f.name} is categorical: list "
                          "its levels, " + f.domain_text())
    elif (spec.levels is None) == (spec.range is None):
        yield Problem(path, "levels and range" if spec.levels else "neither levels nor range",
                      f"{f.name} is numeric: give either range [low, high] or a list of levels, "
                      + f.domain_text())
    for j, level in enumerate(spec.levels or []):
        if problem := _level_problem(f, level):
            yield Problem(f"{path}.levels[{j}]", level, problem)
    if spec.levels is not None and len(set(spec.levels)) != len(spec.levels):
        yield Problem(f"{path}.levels", spec.levels, "each level once")
    if spec.weights is not None and spec.levels is not None \
            and len(spec.weights) != len(spec.levels):
        yield Problem(f"{path}.weights", spec.weights, "one positive weight per level")
    elif spec.weights is not None and spec.levels is None and not f.is_categorical:
        yield Problem(f"{path}.weights", spec.weights, "weights go with levels (one positive "
                      "weight per level); a range is drawn by its distribution")
    if spec.range is not None and not f.is_categorical:  # categorical: said above
        yield from _range_problems(f"{path}.range", f, spec.range)
        if spec.distribution == "loguniform" and spec.range[0] <= 0:
            yield Problem(f"{path}.range", list(spec.range), "a loguniform range starts above 0")

    corr = spec.correlation
    if corr is None:
        return
    k = len(exp.classes)
    cpath = f"{path}.correlation"
    if corr.pairs is None:
        if spec.levels is not None and len(spec.levels) < k:
            yield Problem(f"{cpath}.pairs", Problem.MISSING, f"with {len(spec.levels)} levels "
                          f"for {k} classes, say which level each class pairs with "
                          "(pairs: {class: level})")
        return
    missing = [c for c in exp.classes if c not in corr.pairs]
    extra = [c for c in corr.pairs if c not in exp.classes]
    if missing or extra:
        yield Problem(f"{cpath}.pairs", sorted(corr.pairs), "one entry per class: "
                      + ", ".join(exp.classes))
    for cls, level in corr.pairs.items():
        ppath = f"{cpath}.pairs.{cls}"
        if spec.levels is not None:
            if isinstance(level, (list, tuple)) or level not in spec.levels:
                yield Problem(ppath, level, "one of this factor's levels: "
                              + ", ".join(map(str, spec.levels)))
        elif spec.range is not None:
            lo, hi = spec.range
            if not (isinstance(level, tuple) and lo <= level[0] <= level[1] <= hi):
                yield Problem(ppath, level, f"a sub-range [low, high] inside [{lo:g}, {hi:g}]")


def _level_problem(f: Factor, level: object) -> str | None:
    """What is wrong with a level: outside the factor's domain, or naming a file that is missing
    or not of its format. A file named many times is read once (while it is unchanged)."""
    if problem := f.problem(level):
        return problem
    file = f.file_of(level)
    if file is None:
        return None
    try:
        st = os.stat(file)
        stamp: tuple | None = (st.st_mtime_ns, st.st_size, st.st_ino)
    except OSError:
        stamp = None
    return _file_problem(f.name, level, os.path.abspath(file), stamp)


@functools.lru_cache(maxsize=256)
def _file_problem(factor: str, level: str, where: str, stamp: tuple | None) -> str | None:
    return REGISTRY[factor].file_problem(level)


def _range_problems(path: str, f: Factor, rng: Interval):
    lo, hi = rng
    if lo > hi:
        yield Problem(path, list(rng), "[low, high] with low <= high")
    for v in rng:
        if problem := f.problem(v):
            yield Problem(path, list(rng), problem)
            return


def _unknown_factor(path: str, name: object) -> Problem:
    close = difflib.get_close_matches(str(name), list(REGISTRY), n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return Problem(path, name, f"not a factor{hint}; factors are: " + ", ".join(REGISTRY)
                   + " (`cuelab factors` describes them)")


# --- loading -----------------------------------------------------------------------------------

# Bounds on what a params file may be: a real one is a few kB and a few hundred values.
MAX_EXPERIMENT_BYTES = 1_000_000
MAX_EXPERIMENT_VALUES = 100_000   # scalars and containers, YAML aliases expanded
MAX_EXPERIMENT_DEPTH = 32
MAX_PROBLEMS = 100                # described; more are counted ("... and 4,900 more")


def load_experiment(path: str | Path) -> Experiment:
    """Read and validate a params file; every problem raises `ExperimentError`."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_EXPERIMENT_BYTES:
            raise ExperimentError([Problem("", f"{size} bytes", "an experiment file of at most "
                                           f"{MAX_EXPERIMENT_BYTES} bytes (is it params.yaml?)")],
                                  str(path))
        raw = path.read_bytes()
    except OSError as e:
        raise ExperimentError([Problem("", str(path), f"a readable YAML file ({e.strerror})")],
                              str(path)) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise ExperimentError([Problem(f"byte {e.start}", raw[e.start:e.start + 1],
                                       f"a UTF-8 text file: this byte (line {line}) is not "
                                       "UTF-8; save the file as UTF-8 text (a YAML experiment, "
                                       "not a binary file)")], str(path)) from None
    return experiment_from_yaml(text, source=str(path))


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # libyaml's, where installed
    """The safe loader, refusing a key given twice in one mapping (the last would win)."""


def _mapping_once(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict:
    seen = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node)
        try:  # not isinstance(key, typing.Hashable): that costs a second on 50,000 keys
            given_twice = key in seen
            seen.add(key)
        except TypeError:  # a list or mapping as a key: construct_mapping says so
            continue
        if given_twice:
            raise yaml.constructor.ConstructorError(
                None, None, f"the key {key!r} is given twice in one mapping",
                key_node.start_mark)
    return loader.construct_mapping(node)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_once)


def _size_problem(data: object, limit: int = MAX_EXPERIMENT_VALUES,
                  depth: int = MAX_EXPERIMENT_DEPTH) -> Problem | None:
    """Too many values (aliases expanded) or too deep a nesting, else None. Stops at the
    limit, so a billion-laughs file costs no more than a large honest one."""
    stack, count = [(data, 0)], 0
    while stack:
        item, level = stack.pop()
        count += 1
        if count > limit:
            return Problem("", f"more than {limit} values", "an experiment of at most that "
                           "many values once YAML aliases (&name, *name) are expanded")
        if level > depth:
            return Problem("", f"lists or mappings nested more than {depth} deep",
                           "an experiment a few levels deep")
        if isinstance(item, dict):
            stack.extend((x, level + 1) for pair in item.items() for x in pair)
        elif isinstance(item, (list, tuple)):
            stack.extend((x, level + 1) for x in item)
    return None


def experiment_from_yaml(text: str, source: str = "the experiment") -> Experiment:
    if len(text) > MAX_EXPERIMENT_BYTES:
        raise ExperimentError([Problem("", f"{len(text)} characters", "an experiment of at "
                                       f"most {MAX_EXPERIMENT_BYTES} characters")], source)
    try:
        if (problem := _shape_problem(text)) is not None:
            raise ExperimentError([problem], source)
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 (a safe loader)
    except yaml.YAMLError as e:
        raise ExperimentError([_yaml_problem(e, text)], source) from None
    except RecursionError:
        raise ExperimentError([Problem("", f"lists or mappings nested more than "
                                       f"{MAX_EXPERIMENT_DEPTH} deep",
                                       "an experiment a few levels deep")], source) from None
    if (problem := _size_problem(data)) is not None:
        raise ExperimentError([problem], source)
    return experiment_from_dict(data, source)


def _shape_problem(text: str) -> Problem | None:
    """Too deep a nesting or too many values, seen in the parser's events before anything is
    built: libyaml's composer recurses in C, and some 100,000 nested brackets crash the process
    (a segmentation fault, no RecursionError). Aliases are counted expanded after loading."""
    depth = count = 0
    for event in yaml.parse(text, Loader=_Loader):
        kind = type(event)  # by type, not isinstance: 100,000 events take a tenth of a second
        if kind is yaml.ScalarEvent or kind is yaml.AliasEvent:
            count += 1
            if count > MAX_EXPERIMENT_VALUES:
                return Problem("", f"more than {MAX_EXPERIMENT_VALUES} values", "an experiment "
                               "of at most that many values once YAML aliases (&name, *name) "
                               "are expanded")
        elif step := _NESTING.get(kind):
            depth += step
            if depth > MAX_EXPERIMENT_DEPTH:
                return Problem("", f"lists or mappings nested more than {MAX_EXPERIMENT_DEPTH} "
                               "deep", "an experiment a few levels deep")
    return None


_NESTING = {yaml.MappingStartEvent: 1, yaml.SequenceStartEvent: 1, yaml.MappingEndEvent: -1,
            yaml.SequenceEndEvent: -1}


def _yaml_problem(e: yaml.YAMLError, text: str) -> Problem:
    """Where the YAML breaks (line, column), that line, and what the parser found, with where
    the construct it was reading began (an unclosed bracket or quote is found at its end)."""
    lines = text.splitlines()
    if isinstance(e, yaml.reader.ReaderError):  # a character YAML does not allow: no mark
        line_no = text.count("\n", 0, e.position)
        column = e.position - (text.rfind("\n", 0, e.position) + 1)
        code = e.character if isinstance(e.character, int) else ord(e.character)
        what = f"unacceptable character #x{code:04x}: {e.reason}"
    else:
        mark = getattr(e, "problem_mark", None)
        if mark is None:
            return Problem("", Words("unreadable YAML"), f"well-formed YAML ({e})")
        line_no, column = mark.line, mark.column
        what = getattr(e, "problem", None) or str(e)
        context, start = getattr(e, "context", None), getattr(e, "context_mark", None)
        if context and start is not None and (start.line, start.column) != (line_no, column):
            what += f", {context} that begins at line {start.line + 1}, column {start.column + 1}"
    line = lines[line_no] if line_no < len(lines) else ""
    if line[column:column + 1] == "\t" or (not line[:column].strip() and "\t" in line[:column]):
        what += "; YAML indents with spaces, not tabs"
    return Problem(f"line {line_no + 1}, column {column + 1}", line, f"well-formed YAML ({what})")


def experiment_from_dict(data: object, source: str = "the experiment") -> Experiment:
    if not isinstance(data, dict):
        raise ExperimentError([Problem("", _described(data), "a mapping of keys (name, "
                                       "seed, label, factors, splits, ...)")], source)
    try:
        return Experiment.model_validate(data)
    except ValidationError as e:
        problems, more = _problems(e.errors(include_url=False), data)
        raise ExperimentError(problems, source, more) from None
    except ExperimentError as e:
        e.source = source
        raise


def _described(data: object) -> object:
    """A document that is not a mapping, as a problem shows it."""
    if data is None:
        return Words("an empty document (no keys)")
    if isinstance(data, list):
        return Words(f"a list of {len(data)} item{'s' if len(data) != 1 else ''}, not keys")
    return data


# What a member of a union is, in words: pydantic names the member it tried in the error's location
_MEMBERS = {"str": "a name", "float": "a number", "int": "an integer",
            "tuple[float, float]": "a range [low, high]"}
# Keys people put in an experiment that belong elsewhere
_ELSEWHERE = {"tracking": "the MLflow store is chosen by the MLFLOW_TRACKING_URI environment "
                          "variable (default: mlflow.db here), not by the experiment"}
NAME_RULE = ("a name of 1 to 64 characters: lower-case letters, digits, _ and -, starting with "
             "a letter or digit")


def _problems(errors: list[dict], data: dict) -> tuple[list[Problem], int]:
    """pydantic's errors as problems, one per place: the members a union tried (a level is a name
    or a number) and the items of a pair ([low, high]) are one problem about the whole value.
    The first MAX_PROBLEMS are described, the rest counted (a file of 50,000 unknown keys)."""
    places: dict[tuple, list[dict]] = {}
    for err in errors:
        places.setdefault(_place(err["loc"]), []).append(err)
    described = list(places.items())[:MAX_PROBLEMS]
    return ([_problem(list(loc), errs, data) for loc, errs in described],
            len(places) - len(described))


def _place(raw: tuple) -> tuple:
    """The location an error is told at: at a union, not the member pydantic tried there (its
    tag follows the union's place in the location: 'str', 'tuple[float, float]'); at the pair
    an item belongs to; at a mapping's key of the wrong type ('[key]' follows it). Told apart by
    the schema, not the name: a user's key may be called 'str'."""
    loc: list = []
    for part in raw:
        if _is_union(_type_at(loc)) or (part == "[key]" and loc and _is_dict(_type_at(loc[:-1]))):
            break
        loc.append(part)
    for i in range(1, len(loc)):
        if isinstance(loc[i], int) and typing.get_origin(_type_at(loc[:i])) is tuple:
            return tuple(loc[:i])
    return tuple(loc)


def _is_union(tp: typing.Any) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType)


def _is_dict(tp: typing.Any) -> bool:
    return typing.get_origin(tp) is dict


def _problem(loc: list, errs: list[dict], data: dict) -> Problem:
    err = errs[0]
    path = _path(loc)
    kind = err["type"]
    if kind == "extra_forbidden":
        return Problem(path, loc[-1], _unknown_key(loc))
    raw = err["loc"]
    after = raw[len(loc)] if len(raw) > len(loc) else None  # a union member's tag, '[key]'
    if kind == "invalid_key" or (after == "[key]" and _is_dict(_type_at(loc[:-1]))):
        path = ".".join(filter(None, [_path(loc[:-1]), str(loc[-1])]))  # a key, not an index
        keys = _allowed_keys(loc[:-1])
        return Problem(path, loc[-1], "a key is a name (text), not a number"
                       + (f"; allowed here: {', '.join(keys)}" if keys else ""))
    if len(loc) < len(raw):  # an item's, a member's error: the whole value
        value = _lookup(data, loc, err)
    else:
        value = Problem.MISSING if kind == "missing" else err.get("input")
    tp = _type_at(loc)
    members = [e["loc"][len(loc)] for e in errs if len(e["loc"]) > len(loc)] \
        if _is_union(tp) else []
    if members:
        kinds = [_MEMBERS.get(m, str(m)) for m in dict.fromkeys(members)]
        allowed = ", ".join(kinds[:-1]) + " or " + kinds[-1] if len(kinds) > 1 else kinds[0]
        return Problem(path, value, f"must be {allowed}")
    if typing.get_origin(tp) is tuple:
        return Problem(path, value, _PAIRS.get(typing.get_args(tp), "must be a pair [a, b]"))
    if kind == "model_type":
        return Problem(path, value, "must be a mapping with the keys " + ", ".join(
            _allowed_keys(loc)))
    if kind == "dict_type":
        return Problem(path, value, "must be a mapping ({key: value, ...}, or one 'key: value' "
                       "per line)")
    if kind == "list_type":
        return Problem(path, value, "must be a list ([a, b, ...], or one '- item' per line)")
    if kind == "string_pattern_mismatch" and loc == ["name"]:
        return Problem(path, value, NAME_RULE)
    msg = err["msg"].replace("Input should be", "must be").replace(" after validation", "")
    msg = msg[0].lower() + msg[1:]
    if kind == "string_type" and isinstance(value, (bool, datetime.date)):
        msg += (" (YAML reads an unquoted yes, no, on, off, true, false or date as such: quote "
                "it)")
    return Problem(path, value, msg)


_PAIRS = {(float, float): "must be a range [low, high] of two numbers",
          (str, str): "must be a pair of two factors [a, b]"}


def _path(loc: list) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")


def _lookup(data: object, loc: list, err: dict) -> object:
    """The value at loc in the user's data (the whole pair, for an item's error), else the
    error's input."""
    for part in loc:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return err.get("input")
    return data


def _unknown_key(loc: list) -> str:
    keys = _allowed_keys(loc[:-1])
    close = difflib.get_close_matches(str(loc[-1]), keys, n=1)
    text = "not a known key"
    if len(loc) == 1 and loc[0] in _ELSEWHERE:
        text += f"; {_ELSEWHERE[loc[0]]}"
    elif close:
        text += f" (did you mean '{close[0]}'?)"
    return text + (f"; allowed here: {', '.join(keys)}" if keys else "")


def _allowed_keys(loc: list) -> list[str]:
    """The keys the schema accepts at this location, for 'unknown key' messages."""
    tp = _type_at(loc)
    return list(tp.model_fields) if _is_model(tp) else []


def _type_at(loc: list) -> typing.Any:
    """The schema's type at a location of the experiment (None where it has none)."""
    return _type_at_place(tuple(loc))


@functools.lru_cache(maxsize=1024)  # 50,000 errors ask about a few places
def _type_at_place(loc: tuple) -> typing.Any:
    tp: typing.Any = Experiment
    for part in loc:
        tp = _unwrap(tp)
        args = typing.get_args(tp)
        origin = typing.get_origin(tp)
        if _is_model(tp):
            field = tp.model_fields.get(part) if isinstance(part, str) else None
            if field is None:
                return None
            tp = field.annotation
        elif origin is dict:
            tp = args[1]
        elif origin is list:
            tp = args[0]
        elif origin is tuple and isinstance(part, int) and part < len(args):
            tp = args[part]
        else:
            return None
    return _unwrap(tp)


def _unwrap(tp: typing.Any) -> typing.Any:
    """The type under Annotated[...] and an optional's None."""
    while True:
        origin = typing.get_origin(tp)
        if origin is Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            members = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(members) != 1:
                return tp
            tp = members[0]
        else:
            return tp


def _is_model(tp: typing.Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)
