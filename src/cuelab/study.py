"""Studies: a grid of experiments (variants) x replicates, answering one question together.

A study file (studies/<name>.yaml) names a base experiment (a params file, relative to the study
file), fixed overrides every variant shares (`set`), the axes that vary (a dotted params key ->
its values), how the axes combine (crossed: every combination; zipped: the i-th value of every
axis together) and the replicates (models trained per variant: train.replicates).

    name: colour-dose-response
    base: ../params.yaml
    set: {factors.background.correlation.rho: 1}        # optional
    axes:
      factors.color.correlation.rho: [0, 0.25, 0.5, 0.75, 0.9, 1]
    combine: crossed
    replicates: 3

It is checked as params.yaml is: pydantic for the shape (unknown keys refused), and every variant
(the base with `set` and the variant's axis values written at their dotted keys, train.replicates
and its own name) validated as an experiment by `experiment_from_dict`; each problem names its
field, a variant's problems name the variant's axis values too:
"axes: variant factors.color.correlation.rho=1.5: factors.color.correlation.rho: got 1.5; ...".

Draws (`draws: N`, default 1): each combination of the axes run N times, with the base's seed
and the N - 1 seeds after it, so each draw samples its own training data and probe scenes. The
replicates of one draw share its data, so their spread says nothing of another draw's; the study
report pools a combination's draws, and its intervals then cover the data draw too. Draw 0 is
the variant itself (its name, its seed), so adding draws to a study that has run keeps what it
ran; draw k is `<variant>-draw-k`.

A variant's name is the base's name and a slug of its values (`shapes-vs-color-rho-0p25`); it is
the variant's experiment name too (its MLflow experiment, its DVC experiment's name).

What a finished variant leaves, where `cuelab study report` reads it (and where `cuelab study run`
is to put it): <runs>/<variant>/evaluation/results.json (and trace_report.html beside
evaluation/, linked from the study report); <runs> defaults to runs/<study name>.

Sharing renders: rows that ask for the same picture have the same render_id (`scenes.render_ids`:
a hash of the scene factors), whatever the experiment; a variant that changes only training,
sensor or evaluation keys asks for exactly the base's renders. `study check` counts the renders
each variant needs and the distinct ones across the study (render ids of the same render settings),
what the shared render cache (`cuelab.render.cache`) has to draw, and how many it already holds.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import hashlib
import itertools
import json
import math
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import Field, ValidationError

from . import config as C
from .config import Experiment, Strict, experiment_from_dict
from .errors import ExperimentError, Problem, Words

MAX_VARIANTS = 500  # a crossed grid grows fast: 6 x 6 x 6 x 3 is already 648
KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
NAME_RE = r"^[a-z0-9][a-z0-9_-]{0,63}$"
# keys a study sets itself: an axis or `set` may not
OWN_KEYS = {"name": "each variant's name is the base's name and a slug of its axis values",
            "train.replicates": "the study's `replicates` sets it for every variant"}
MAX_DRAWS = 20


class StudyError(ExperimentError):
    """A study file's problems, each naming its field (as an experiment's do)."""

    def __str__(self) -> str:
        return super().__str__().replace(" in the experiment", " in the study", 1)


class StudySpec(Strict):
    name: str = Field(pattern=NAME_RE)
    base: str = Field(min_length=1)
    set: dict[str, Any] = {}
    axes: dict[str, Annotated[list[Any], Field(min_length=1)]] = Field(min_length=1)
    combine: Literal["crossed", "zipped"] = "crossed"
    replicates: int = Field(strict=True, ge=1, le=100)
    draws: int = Field(default=1, strict=True, ge=1, le=MAX_DRAWS)


@dataclasses.dataclass(frozen=True)
class Variant:
    name: str
    values: dict[str, Any]      # dotted key -> this variant's value, in the axes' order
    experiment: Experiment
    draw: int = 0               # of the study's draws: seed = the base's seed + draw

    def label(self) -> str:
        return ", ".join(f"{k}={_text(v)}" for k, v in self.values.items()) + (
            f", draw {self.draw} (seed {self.experiment.seed})" if self.draw else "")


@dataclasses.dataclass(frozen=True)
class Study:
    spec: StudySpec
    path: Path                  # the study file
    base_path: Path             # the base params file, resolved
    base: Experiment
    _variants: tuple[Variant, ...]

    @property
    def name(self) -> str:
        return self.spec.name

    def variants(self) -> list[Variant]:
        return list(self._variants)

    def numeric_axes(self) -> list[str]:
        """The axes whose every value is a number (curves are drawn against these)."""
        return [k for k, vs in self.spec.axes.items() if all(_is_number(v) for v in vs)]

    def categorical_axes(self) -> list[str]:
        """The other axes (a mitigation, a model): each level set beside the first."""
        numeric = self.numeric_axes()
        return [k for k in self.spec.axes if k not in numeric]


# --- reading ---------------------------------------------------------------------------------

def load_study(path: str | Path) -> Study:
    """Read and check a study file and every variant it makes; any problem raises `StudyError`
    naming its field. Nothing is written."""
    path = Path(path)
    source = str(path)
    data = _read_yaml(path, source)
    if not isinstance(data, dict):
        raise StudyError([Problem("", C._described(data), "a mapping with the keys "
                                  + ", ".join(StudySpec.model_fields))], source)
    try:
        spec = StudySpec.model_validate(data)
    except ValidationError as e:
        raise StudyError(_problems(e), source) from None
    problems = list(_spec_problems(spec))
    if problems:
        raise StudyError(problems, source)
    base_path = Path(os.path.normpath(path.parent / spec.base))
    base_raw = _read_base(base_path, spec.base, source)
    try:
        base = experiment_from_dict(copy.deepcopy(base_raw), str(base_path))
    except ExperimentError as e:
        raise StudyError(_within(f"base ({spec.base})", e), source) from None
    fixed = copy.deepcopy(base_raw)
    problems = [p for k, v in spec.set.items() for p in _assign(fixed, k, v, f"set.{k}")]
    if problems:
        raise StudyError(problems, source)
    if spec.set:
        try:
            experiment_from_dict(copy.deepcopy(fixed), source)
        except ExperimentError as e:
            raise StudyError(_within("set", e), source) from None
    combos = _combinations(spec)
    names = variant_names(base.name, spec.axes, combos)
    variants, problems = [], []
    for name, values in zip(names, combos):
        raw = copy.deepcopy(fixed)
        found = [p for k, v in values.items() for p in _assign(raw, k, v, f"axes.{k}")]
        if found:
            problems += found
            continue
        _assign(raw, "train.replicates", spec.replicates, "replicates")
        where = "axes: variant " + ", ".join(f"{k}={_text(v)}" for k, v in values.items())
        for draw in range(spec.draws):
            one = copy.deepcopy(raw)
            one["name"] = draw_name(name, draw)
            if draw:
                one["seed"] = int(raw.get("seed", base.seed)) + draw
            try:
                variants.append(Variant(one["name"], values, experiment_from_dict(one, source),
                                        draw))
            except ExperimentError as e:
                problems += _within(where + (f", draw {draw}" if draw else ""), e)
    if problems:
        raise StudyError(list(dict.fromkeys(problems)), source)
    return Study(spec, path, base_path, base, tuple(variants))


def _read_yaml(path: Path, source: str) -> object:
    """The study file, read as params.yaml is (the same bounds, the same safe loader)."""
    try:
        size = path.stat().st_size
        if size > C.MAX_EXPERIMENT_BYTES:
            raise StudyError([Problem("", f"{size} bytes", "a study file of at most "
                                      f"{C.MAX_EXPERIMENT_BYTES} bytes")], source)
        text = path.read_bytes().decode("utf-8")
    except OSError as e:
        raise StudyError([Problem("", source, f"a readable YAML file ({e.strerror})")],
                         source) from None
    except UnicodeDecodeError as e:
        raise StudyError([Problem(f"byte {e.start}", Words("a byte that is not UTF-8"),
                                  "a UTF-8 text file")], source) from None
    try:
        if (problem := C._shape_problem(text)) is not None:
            raise StudyError([problem], source)
        data = yaml.load(text, Loader=C._Loader)  # noqa: S506 (a safe loader)
    except yaml.YAMLError as e:
        raise StudyError([C._yaml_problem(e, text)], source) from None
    if (problem := C._size_problem(data)) is not None:
        raise StudyError([problem], source)
    return data


def _read_base(base_path: Path, given: str, source: str) -> dict:
    if not base_path.is_file():
        raise StudyError([Problem("base", given, f"a params file, relative to the study file "
                                  f"({base_path} does not exist)")], source)
    try:
        raw = _read_yaml(base_path, str(base_path))
    except StudyError as e:
        raise StudyError(_within(f"base ({given})", e), source) from None
    if not isinstance(raw, dict):
        raise StudyError([Problem("base", given, "a params file holding a mapping (name, seed, "
                                  "label, ...)")], source)
    return raw


def _within(where: str, e: ExperimentError) -> list[Problem]:
    """An experiment's problems as a study's: each prefixed with where in the study it is."""
    return [Problem(f"{where}: {p.where()}", p.value, p.allowed) for p in e.problems]


def _problems(e: ValidationError) -> list[Problem]:
    out = []
    for err in e.errors(include_url=False):
        loc = list(err["loc"])
        if len(loc) > 1 and loc[0] in ("axes", "set") and isinstance(loc[1], str):
            path = f"{loc[0]}.{loc[1]}" + C._path(loc[2:]) if len(loc) > 2 else \
                f"{loc[0]}.{loc[1]}"
            path = path.replace(".[", "[")
        else:
            path = C._path(loc)
        kind = err["type"]
        if kind == "extra_forbidden":
            keys = list(StudySpec.model_fields)
            near = difflib.get_close_matches(str(loc[-1]), keys, n=1)
            out.append(Problem(path, loc[-1], "not a known key"
                               + (f" (did you mean '{near[0]}'?)" if near else "")
                               + "; allowed here: " + ", ".join(keys)))
            continue
        value = Problem.MISSING if kind == "missing" else err.get("input")
        if kind == "too_short" and loc[:1] == ["axes"] and len(loc) == 2:
            msg = "a non-empty list of the values this axis takes"
        elif kind == "too_short" and loc == ["axes"]:
            msg = "at least one axis: a params key (dotted) and its values"
        elif kind == "string_pattern_mismatch" and loc == ["name"]:
            msg = C.NAME_RULE
        else:
            msg = err["msg"].replace("Input should be", "must be")
            msg = msg[0].lower() + msg[1:]
        out.append(Problem(path, value, msg))
    return out


def _spec_problems(spec: StudySpec):
    for where, keys in (("axes", spec.axes), ("set", spec.set)):
        for key in keys:
            if not KEY.match(key):
                yield Problem(f"{where}.{key}", key, "a params key, its parts joined by dots "
                              "(e.g. factors.color.correlation.rho)")
            elif key in OWN_KEYS:
                yield Problem(f"{where}.{key}", key, f"set by the study: {OWN_KEYS[key]}")
    for key in set(spec.axes) & set(spec.set):
        yield Problem(f"set.{key}", key, "an axis already varies this key: set it in one place")
    if spec.draws > 1:
        for where, keys in (("axes", spec.axes), ("set", spec.set)):
            if "seed" in keys:
                yield Problem(f"{where}.seed", "seed", f"set by the study's draws: {spec.draws} "
                              "draws take the base's seed and the ones after it (draws: 1 "
                              "leaves seed to you)")
    if spec.combine == "zipped":
        lengths = {k: len(v) for k, v in spec.axes.items()}
        if len(set(lengths.values())) > 1:
            yield Problem("axes", Words(", ".join(f"{k}: {n} values"
                                                  for k, n in lengths.items())),
                          "combine: zipped pairs the i-th values of every axis: give every "
                          "axis the same number of values (or combine: crossed)")
    n = (math.prod(len(v) for v in spec.axes.values()) if spec.combine == "crossed"
         else min(len(v) for v in spec.axes.values())) * spec.draws
    if n > MAX_VARIANTS:
        yield Problem("axes", Words(f"{n} variants" + (f" ({spec.draws} draws each)"
                                                        if spec.draws > 1 else "")),
                      f"at most {MAX_VARIANTS} variants")
    for key, values in spec.axes.items():
        seen = [json.dumps(v, sort_keys=True, default=str) for v in values]
        dup = [values[i] for i, s in enumerate(seen) if seen.count(s) > 1 and seen.index(s) == i]
        if dup:
            yield Problem(f"axes.{key}", dup, "each value once")


def _assign(data: dict, key: str, value: Any, where: str) -> list[Problem]:
    """Set data at the dotted key (missing mappings on the way are made); a problem if a part
    on the way holds something other than a mapping."""
    parts = key.split(".")
    node = data
    for i, part in enumerate(parts[:-1]):
        nxt = node.get(part)
        if nxt is None:
            nxt = node[part] = {}
        if not isinstance(nxt, dict):
            return [Problem(where, key, f"a key through mappings: {'.'.join(parts[:i + 1])} "
                            f"holds {nxt!r}, not a mapping")]
        node = nxt
    node[parts[-1]] = copy.deepcopy(value)
    return []


def _combinations(spec: StudySpec) -> list[dict[str, Any]]:
    keys = list(spec.axes)
    rows = (itertools.product(*spec.axes.values()) if spec.combine == "crossed"
            else zip(*spec.axes.values()))
    return [dict(zip(keys, r)) for r in rows]


# --- names -----------------------------------------------------------------------------------

def variant_names(base: str, axes: dict[str, list], combos: list[dict]) -> list[str]:
    """The base's name and a slug of each variant's values (`rho-0p25`): each axis by the
    shortest end of its key that no other axis shares. A name longer than an experiment's 64
    characters, or one two variants would share, ends in a hash of the values instead."""
    short = _short_keys(list(axes))
    names = []
    for values in combos:
        slug = "-".join(f"{short[k]}-{_slug(v)}" for k, v in values.items())
        names.append(f"{base}-{slug}")
    for i, (name, values) in enumerate(zip(names, combos)):
        if len(name) > 64 or names.count(name) > 1 or not re.match(NAME_RE, name):
            digest = hashlib.blake2b(json.dumps(values, sort_keys=True, default=str).encode(),
                                     digest_size=4).hexdigest()
            names[i] = f"{base[:64 - 9]}-{digest}"
    return names


def draw_name(name: str, draw: int) -> str:
    """Draw 0 is the variant itself; draw k ends in -draw-k (a name too long for that keeps
    its start and a hash of the whole, so that cut names stay distinct)."""
    if not draw:
        return name
    suffix = f"-draw-{draw}"
    if len(name) + len(suffix) > 64:
        digest = hashlib.blake2b(name.encode(), digest_size=4).hexdigest()
        name = f"{name[:64 - len(suffix) - 9]}-{digest}"
    return name + suffix


def _short_keys(keys: list[str]) -> dict[str, str]:
    out = {}
    for key in keys:
        parts = key.split(".")
        for n in range(1, len(parts) + 1):
            end = parts[-n:]
            if not any(k != key and k.split(".")[-n:] == end for k in keys):
                break
        out[key] = _slug("_".join(end))
    return out


def _slug(v: Any) -> str:
    text = _text(v).lower()
    if _is_number(v):
        text = text.replace("-", "m").replace(".", "p").replace("+", "")
    return re.sub(r"[^a-z0-9_]+", "-", text).strip("-") or "x"


def study_from_texts(study_yaml: str, params_yaml: str, folder: str | Path) -> Study:
    """A study given as texts (a pipeline's parameters): the study file's text with
    `params_yaml` as its base, whatever its `base` says. Both are written into `folder` (the
    study's paths point there) and read as `load_study` reads them."""
    folder = Path(folder)
    (folder / "params.yaml").write_text(params_yaml)
    spec = yaml.safe_load(study_yaml)
    if isinstance(spec, dict):
        spec["base"] = "params.yaml"
    (folder / "study.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return load_study(folder / "study.yaml")


def study_scenes(study: Study):
    """One row per distinct render across the variants that render as the base does (the same
    render settings): the scenes table that, rendered once into the shared render cache before
    the variants fan out, leaves them nothing to render but what their own settings change."""
    import pandas as pd

    from .sampling import sample_scenes

    same = [v for v in study.variants() if v.experiment.render == study.base.render]
    tables = {v.experiment.model_dump_json(exclude={"name", "train", "evaluate", "sensor"}):
              v.experiment for v in same}
    union = pd.concat([sample_scenes(e) for e in tables.values()], ignore_index=True)
    return union.drop_duplicates("render_id").reset_index(drop=True)


def _in_render_cache(study: Study, renders: set) -> set | None:
    """Which of these renders ((settings, render_id)) the base project's render cache already
    holds (None: no cache)."""
    from .config import RenderSettings
    from .render import renderer_fingerprint
    from .render.cache import RenderCache, default_folder

    folder = default_folder(study.base_path.parent / "data" / "renders")
    if folder is None:
        return None
    caches: dict[str, RenderCache] = {}
    held = set()
    for settings, render_id in renders:
        if settings not in caches:
            caches[settings] = RenderCache(folder, RenderSettings.model_validate_json(settings),
                                           renderer_fingerprint())
        if caches[settings].path(render_id).is_file():
            held.add((settings, render_id))
    return held


def _text(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    return v if isinstance(v, str) else json.dumps(v, default=str)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


# --- the plan (`cuelab study check`) ----------------------------------------------------------

@dataclasses.dataclass
class VariantPlan:
    variant: Variant
    images: int
    renders: set            # (render settings, render_id)
    seconds: dict[str, float | None]


def plan(study: Study) -> list[VariantPlan]:
    """Each variant's images, renders and estimated time; variants that share a scenes table
    (those that change only train, evaluate or sensor settings) are sampled once."""
    from .describe import estimate_seconds
    from .sampling import sample_scenes

    tables: dict[str, set] = {}
    plans = []
    for v in study.variants():
        exp = v.experiment
        key = exp.model_dump_json(exclude={"name", "train", "evaluate", "sensor"})
        if key not in tables:
            settings = exp.render.model_dump_json()
            tables[key] = {(settings, r) for r in sample_scenes(exp)["render_id"].unique()}
        renders = tables[key]
        images = sum(exp.row_counts().values())
        plans.append(VariantPlan(v, images, renders, estimate_seconds(exp, len(renders), images)))
    return plans


def plan_text(study: Study) -> str:
    from .describe import QUEUE_S_PER_VARIANT, _duration, estimate_seconds

    plans = plan(study)
    spec = study.spec
    seed = plans[0].variant.experiment.seed
    lines = [f"{study.path}: valid study '{study.name}': base {study.base_path} "
             f"('{study.base.name}'), {len(plans)} variants ({spec.combine} axes: "
             + ", ".join(f"{k} {len(v)} values" for k, v in spec.axes.items())
             + (f"; {spec.draws} draws of the data each, seeds {seed} to "
                f"{seed + spec.draws - 1}" if spec.draws > 1 else "") + ")"]
    if spec.set:
        lines.append("  every variant sets: " + ", ".join(f"{k}={_text(v)}"
                                                          for k, v in spec.set.items()))
    width = max(len(p.variant.name) for p in plans)
    for p in plans:
        lines.append(f"  {p.variant.name:<{width}}  {p.variant.label()}: {p.images} images, "
                     f"{len(p.renders)} renders, {spec.replicates} models")
    models = len(plans) * spec.replicates
    images = sum(p.images for p in plans)
    each = sum(len(p.renders) for p in plans)
    shared: set = set().union(*(p.renders for p in plans))
    lines.append(f"  models to train: {models} ({len(plans)} variants x {spec.replicates} "
                 "replicates)")
    lines.append(f"  images: {images} in all ({images // len(plans)} per variant on average)")
    cached = _in_render_cache(study, shared)
    lines.append(f"  renders: {len(shared)} distinct across the study (each variant alone: "
                 f"{each}), each drawn once through the shared render cache"
                 + (f", {len(cached)} of them already there" if cached is not None else
                    " (none here: `cuelab study run` uses the project's)"))
    # time: every variant's sensor and training; each distinct render not yet in the cache once
    seen: set = set(cached or ())
    total = {"render": 0.0, "sensor": 0.0, "train": 0.0, "the other steps": 0.0,
             "the DVC queue": QUEUE_S_PER_VARIANT * len(plans)}
    alone_render = 0.0
    unknown = []
    for p in plans:
        new = p.renders - seen
        seen |= new
        t = estimate_seconds(p.variant.experiment, len(new), p.images)
        alone_render += estimate_seconds(p.variant.experiment, len(p.renders),
                                         p.images)["render"] or 0.0
        for k, v in t.items():
            if v is None:
                unknown.append(p.variant.name)
            else:
                total[k] += v
    text = ", ".join(f"{k} {_duration(v)}" for k, v in total.items())
    lines.append(f"  estimated time: about {_duration(sum(total.values()))} on 2 CPU cores "
                 f"({text}; without the cache the renders alone would take "
                 f"{_duration(alone_render)})"
                 + (f"; training not estimated for {', '.join(unknown)} (not simple_cnn)"
                    if unknown else "")
                 + "; from describe.py's measured rates")
    return "\n".join(lines)
