"""results.json: what the evaluation found, the contract between `cuelab evaluate` and every
reader (the report, the headline metrics, the Kubeflow component).

`Results` is its schema (pydantic; `schema` is its version): `evaluate` builds one and writes
`model_dump_json`, readers call `load_results(path)` and use attributes. An *estimate*
(`cuelab.probes.Estimate`) is {value, low, high, n}: the statistic, its bootstrap interval at
`bootstrap.confidence`, and the number of resampled units; value/low/high are null when undefined.

    schema: 3
    experiment, classes, seed, bootstrap {resamples, confidence, seed}
    models: [{models_dir, ...each replicate's config from its model.json}], one per replicate
    iid: {accuracy: estimate, confusion: [[int]] (true x predicted, every model's decisions),
          class_accuracy}
    worst_group: [{factor, accuracy, average: estimate, group, groups, smallest}] per factor
                 paired with the classes, on the balanced test split (empty without one)
    probes: {kind: {key: result}}, a result model per kind of `cuelab.probes.PROBE_KINDS`:
        sweep: {factor: SweepResult}, conflict: {"a_vs_b": ConflictResult},
        protocol: {"background": ProtocolResult} (empty without a background protocol)
    attribution: null | {images, patch, split, saliency and occlusion: {on_object, object_area,
                 ratio: estimate}, maps: "attribution/maps.npz", examples: [...]}
    reliance: [{rank, factor, reliance: estimate, set_by: ref, evidence: [{ref, label,
                 detail, estimate}]}], highest first; a ref is {kind, key, measure}: the probe
                 (probes.<kind>.<key>) and the field of its result the number is
    robustness: [{ref, factor, condition, why, accuracy, baseline, drop: estimate}], the
                 largest drop first: every condition no training image had
    not_cues: [factor]: probed factors that indicate no class in training (no reliance)
    reliance_definition, robustness_definition: str
Every estimate also holds `per_model`: the statistic of each trained model.
    files: {predictions, summary, figures: {name: path}}   paths relative to results.json
    (the evaluation's MLflow run is in mlflow-run.json beside it: `Tracking`)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from .errors import CuelabError
from .probes import PROBE_KINDS
from .probes.base import Evidence, Fragility, ProbeRef
from .probes.estimate import Estimate, Strict

SCHEMA = 3
FILE = "results.json"


class BootstrapSettings(Strict):
    resamples: int
    confidence: float
    seed: int


class IIDResult(Strict):
    accuracy: Estimate
    confusion: list[list[int]]                  # counts[true class][predicted class]
    class_accuracy: dict[str, float | None]     # each class's recall


class AttributionShares(Strict):
    on_object: Estimate     # mean share of the map's mass inside the mask
    object_area: Estimate   # mean share of the image the mask covers
    ratio: Estimate         # on_object / object_area (1 = blind to the object)


class AttributionExample(Strict):
    image_id: str
    label: int
    pred: int
    image: str              # PNG paths, relative to results.json
    mask: str
    saliency: str
    occlusion: str


class AttributionResult(Strict):
    images: int
    patch: int
    split: str
    saliency: AttributionShares
    occlusion: AttributionShares
    maps: str
    examples: list[AttributionExample]


class RelianceEntry(Strict):
    rank: int
    factor: str
    reliance: Estimate      # the pre-declared evidence's estimate
    set_by: ProbeRef        # ... and where it comes from
    evidence: list[Evidence]

    @property
    def top(self) -> Evidence:
        return next(e for e in self.evidence if e.ref == self.set_by)


class WorstGroup(Strict):
    """Groups are class x the class a factor's value indicates, on the balanced test split."""
    factor: str
    accuracy: Estimate      # each model's lowest group accuracy (the group chosen per resample)
    average: Estimate       # the mean of the group accuracies
    group: str              # the worst group at the point estimate
    groups: int
    smallest: int           # images in the smallest group


class Files(Strict):
    predictions: str
    summary: str
    figures: dict[str, str]


class Tracking(Strict):
    """The evaluation's MLflow run (reports/evaluation/mlflow-run.json, not results.json: run
    ids differ from run to run, the results do not)."""
    tracking_uri: str
    experiment_id: str
    run_id: str
    parent_run_id: str | None


# probes.<kind>: {key: the kind's result model}, one field per registered kind
ProbeResults = create_model(
    "ProbeResults", __config__=ConfigDict(extra="forbid"),
    **{name: (dict[str, kind.result_model], Field(default_factory=dict))
       for name, kind in PROBE_KINDS.items()})


class Results(Strict):
    model_config = ConfigDict(extra="forbid", validate_by_name=True, serialize_by_alias=True)
    schema_version: Literal[3] = Field(SCHEMA, alias="schema")
    experiment: str
    classes: list[str]
    seed: int
    bootstrap: BootstrapSettings
    models: list[dict[str, Any]]
    iid: IIDResult
    worst_group: list[WorstGroup]
    probes: ProbeResults  # type: ignore[valid-type]
    attribution: AttributionResult | None
    reliance: list[RelianceEntry]
    robustness: list[Fragility]
    not_cues: list[str]
    reliance_definition: str
    robustness_definition: str
    files: Files

    @property
    def model(self) -> dict[str, Any]:
        """The first replicate's config (what every replicate shares: architecture, data)."""
        return self.models[0] if self.models else {}

    def of(self, kind: str) -> dict[str, BaseModel]:
        """Every result of one probe kind, by key."""
        return getattr(self.probes, kind)

    def result(self, ref: ProbeRef) -> BaseModel:
        """The result a ref points at."""
        return self.of(ref.kind)[ref.key]

    def to_json(self) -> str:
        return self.model_dump_json(indent=1)


def load_results(path: str | Path) -> Results:
    """results.json (or the evaluation folder holding it), checked to be schema 3. A missing
    file, a file that is not JSON, one from another version of cuelab and one that is no
    results file at all are each a CuelabError naming the file."""
    path = Path(path)
    if path.is_dir() or path.suffix != ".json":
        path = path / FILE
    if not path.is_file():
        raise CuelabError(f"no evaluation results in {path.parent} ({path} is missing): "
                          "run `cuelab evaluate` first")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CuelabError(f"{path} is not valid JSON ({e}): run `cuelab evaluate` again") \
            from None
    schema = data.get("schema") if isinstance(data, dict) else None
    if isinstance(schema, int) and not isinstance(schema, bool) and schema != SCHEMA:
        age = "an older" if schema < SCHEMA else "a newer"
        raise CuelabError(f"{path}: written by {age} cuelab (schema {schema}); this one reads "
                          f"schema {SCHEMA}: run `cuelab evaluate` again")
    try:
        return Results.model_validate(data)
    except ValidationError as e:
        raise CuelabError(f"{path} is not a cuelab results file: {_problems(e)}") from None


def _problems(error: ValidationError, most: int = 3) -> str:
    """The first few problems of a validation, each with its field path."""
    found = error.errors()
    said = [f"{'.'.join(str(p) for p in e['loc']) or '(top level)'}: {e['msg'].lower()}"
            for e in found[:most]]
    more = f"; and {len(found) - most} more" if len(found) > most else ""
    return "; ".join(said) + more
