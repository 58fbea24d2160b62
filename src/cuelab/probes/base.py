"""What a probe kind declares, and how evidence points back at the probe it came from."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

import numpy as np
import pandas as pd
from pydantic import BaseModel

from .estimate import Bootstrap, Estimate, Strict

if TYPE_CHECKING:
    from pathlib import Path

    from ..config import Experiment
    from ..report.markup import PageContext


# How the verdict may say a probe for a factor (`ProbeKind.claim`), the strongest first.
WON = 0          # the factor clearly won it (a conflict)
MADE_FOR = 1     # the probe exists for the factor (the background protocol)
EVIDENCE = 2     # it is evidence about the factor


class ProbeRef(Strict):
    """One number of one probe: the kind ("sweep"), the probe's key within its kind ("color",
    "shape_vs_color", "background") and the measure, a field of the probe's result
    ("max_flip_rate", "share_a", "gap")."""
    kind: str
    key: str
    measure: str

    @property
    def probe(self) -> tuple[str, str]:
        """(kind, key): the probe itself, whatever the measure."""
        return self.kind, self.key


class Evidence(Strict):
    """Reliance: one probe's share of the model's decisions that follow a factor's cue, beyond
    what they would without it (0 for a model that does not use the cue), measured only where
    the images stay inside the training distribution. `label` and `detail` are for people
    ("cue shift", "over the training colours"); readers find the probe through `ref`."""
    ref: ProbeRef
    label: str
    detail: str
    estimate: Estimate


class Fragility(Strict):
    """Robustness: how accuracy changes when a probe leaves the training distribution (a level
    or backdrop no training image had): `drop` = `baseline` (the same base scenes inside the
    training distribution) - `accuracy` (at `condition`). `why` says what training had."""
    ref: ProbeRef
    factor: str
    condition: str
    why: str
    accuracy: Estimate
    baseline: Estimate
    drop: Estimate


@dataclass(frozen=True)
class ProbeKind:
    """Everything about one kind of probe, in the kind's module. The evaluation, the headline
    metrics, the reliance ranking, the robustness table and both pages iterate over
    `cuelab.probes.PROBE_KINDS`.

    name          the kind, as results.json (`probes.<name>`), refs and figure files name it
    result_model  the pydantic model of one probe's result
    statistics    (predictions, experiment, bootstrap) -> {key: result}, one per probe the
                  experiment asks for
    factors       result -> the factors the probe varies (each factor's section shows it)
    reliance      (key, result) -> [(factor, Evidence)]: what the reliance ranking takes, from
                  images inside the training distribution only
    robustness    (key, result) -> [Fragility]: accuracy outside the training distribution
    precedence    when a factor has reliance evidence from several kinds, the kind with the
                  lowest number sets its reliance (declared, never chosen by value)
    metrics       {key: result} -> {section: numbers} for metrics/evaluate.json (and MLflow)
    plots         ({key: result}, folder) -> None: plot data for `dvc plots`, if any
    claim         (result, factor) -> how the verdict may say this probe for the factor: WON,
                  MADE_FOR or EVIDENCE (the strongest is said), None when it speaks for another
    sentence      (result, factor, label factor) -> the finding in words, from factor's side
    section       (factor, key, result, page) -> the HTML block under the factor's heading
    describe      experiment -> one line per probe of this kind it configures
    reliance_text how this kind's evidence enters the reliance, in words
    glossary      (term, definition) for the page's "How to read this page"
    """
    name: str
    result_model: type[BaseModel]
    statistics: Callable[[pd.DataFrame, Experiment, Bootstrap], dict[str, BaseModel]]
    factors: Callable[[BaseModel], list[str]]
    reliance: Callable[[str, BaseModel], list[tuple[str, Evidence]]]
    robustness: Callable[[str, BaseModel], list[Fragility]]
    precedence: int
    metrics: Callable[[dict[str, BaseModel]], dict[str, dict]]
    claim: Callable[[BaseModel, str], int | None]
    sentence: Callable[[BaseModel, str, str | None], str]
    section: Callable[[str, str, BaseModel, PageContext], str]
    describe: Callable[[Experiment], list[str]]
    reliance_text: str
    glossary: tuple[tuple[str, str], ...] = ()
    plots: Callable[[dict[str, BaseModel], Path], None] | None = field(default=None)

    def figure_name(self, key: str) -> str:
        """The name of the figure of one probe (figures/<name>.png of the evaluation)."""
        return f"{self.name}-{key}"


def replicates(rows: pd.DataFrame) -> list[int]:
    """The trained models whose decisions the predictions hold (the `replicate` column)."""
    return sorted(int(r) for r in rows["replicate"].unique())


def by_model(rows: pd.DataFrame, index: str, columns: str | None, values: str,
             order: list | None = None) -> np.ndarray:
    """One column of the predictions as (models, units, ...): units are `index` values in
    sorted order, the last axis `columns` in `order` (when given)."""
    out = []
    for r in replicates(rows):
        part = rows[rows.replicate == r]
        if columns is None:
            out.append(part.set_index(index)[values].sort_index().to_numpy())
        else:
            wide = part.pivot(index=index, columns=columns, values=values).sort_index()
            out.append(wide[order].to_numpy() if order is not None else wide.to_numpy())
    return np.stack(out).astype(np.float64)
