"""The statistics of the evaluation that belong to no probe kind, as pure functions: IID accuracy
on the test split, and the importance ranking over the evidence of every probe kind. (Each kind's
own statistics live in its module of `cuelab.probes`; the bootstrap in `cuelab.probes.estimate`.)

A predictions table is the scenes table (`cuelab.scenes`) with one more column, `pred`: the class
index the model chose for the row's image. Nothing here touches a model or an image, so every
number can be checked by hand on a made-up table.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pydantic import BaseModel

from ..probes import PROBE_KINDS
from ..probes.base import Evidence
from ..probes.estimate import Bootstrap
from ..results import IIDResult, ImportanceEntry



def _importance_definition() -> str:
    parts = [kind.importance for kind in PROBE_KINDS.values()]
    listed = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + ", and " + parts[-1]
    return ("A factor's importance is the largest share of the model's decisions that changing "
            f"it moves, over all its probes: {listed}.")


IMPORTANCE_DEFINITION = _importance_definition()


def confusion_matrix(labels: np.ndarray, preds: np.ndarray, k: int) -> np.ndarray:
    """counts[true, predicted]."""
    return np.bincount(np.asarray(labels) * k + np.asarray(preds), minlength=k * k).reshape(k, k)


def iid(table: pd.DataFrame, classes: list[str], boot: Bootstrap) -> IIDResult:
    """Accuracy on the test split, its confusion matrix and each class's recall."""
    rows = table[table.split == "test"]
    labels, preds = rows.label.to_numpy(np.int64), rows.pred.to_numpy(np.int64)
    cm = confusion_matrix(labels, preds, len(classes))
    with np.errstate(invalid="ignore"):
        recall = np.diag(cm) / cm.sum(1)
    return IIDResult(accuracy=boot.mean("iid:accuracy", labels == preds),
                     confusion=cm.tolist(),
                     class_accuracy={c: (None if np.isnan(r) else float(r))
                                     for c, r in zip(classes, recall)})


def importance_ranking(probes: dict[str, dict[str, BaseModel]]) -> list[ImportanceEntry]:
    """Each factor's importance: the largest share of the model's decisions that changing the
    factor moves, over every probe of it. `probes` holds each kind's results by key; each kind
    says what evidence its results give (`ProbeKind.evidence`), all fractions of probe decisions:
    for sweeps the largest flip rate, for conflicts the share of decisions that follow the
    factor's cue, for the background protocol the gap and the Only-FG drop. The evidence with
    the largest value sets the importance and its interval; factors are ranked by it, highest
    first. (Attribution is about where, not how much: it is not on this scale.)"""
    evidence: dict[str, list[Evidence]] = {}
    for name, kind in PROBE_KINDS.items():
        for key, result in probes.get(name, {}).items():
            for factor, item in kind.evidence(key, result):
                if item.estimate.defined:
                    evidence.setdefault(factor, []).append(item)
    tops = {f: max(items, key=lambda e: e.estimate.value) for f, items in evidence.items()}
    order = sorted(evidence, key=lambda f: (-tops[f].estimate.value, f))
    return [ImportanceEntry(rank=rank, factor=f, importance=tops[f].estimate,
                            set_by=tops[f].ref, evidence=evidence[f])
            for rank, f in enumerate(order, 1)]
