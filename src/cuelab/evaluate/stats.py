"""The statistics of the evaluation that belong to no probe kind, as pure functions: IID accuracy
on the test split, worst-group accuracy on the balanced test split, the reliance ranking over
the evidence of every probe kind, and the robustness table.

A predictions table is the scenes table (`cuelab.scenes`) with two more columns: `replicate`,
the trained model, and `pred`, the class index it chose for the row's image; one row per image
and model. Nothing here touches a model or an image, so every number can be checked by hand on
a made-up table.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pydantic import BaseModel

from ..config import Experiment
from ..probes import PROBE_KINDS
from ..probes.base import Evidence, Fragility, by_model
from ..probes.estimate import Bootstrap, total
from ..results import IIDResult, RelianceEntry, WorstGroup
from ..scenes import indicated_class


def _kinds_text(attribute: str) -> str:
    parts = [getattr(kind, attribute) for kind in
             sorted(PROBE_KINDS.values(), key=lambda k: k.precedence)]
    return "; ".join(parts)


RELIANCE_DEFINITION = (
    "A factor's reliance is the share of the model's decisions that follow its cue beyond what "
    "they would without it, measured only on images inside the training distribution, so that "
    "it is 0 for a model that does not use the factor. Only factors that indicate a class in "
    "training (the label, and factors paired with the classes) can be relied on; the others "
    "have no reliance, only robustness. Each factor's reliance is one pre-declared measure, the "
    "first it has of: " + _kinds_text("reliance_text") + ". The intervals resample the trained "
    "models, then the probe scenes.")
ROBUSTNESS_DEFINITION = (
    "Robustness is how accuracy changes outside the training distribution (levels, backdrops "
    "and settings no training image had): the accuracy of the same base scenes inside it "
    "minus the accuracy at the unseen condition. It says how the model fails on what it never "
    "saw, not what it relies on.")


def confusion_matrix(labels: np.ndarray, preds: np.ndarray, k: int) -> np.ndarray:
    """counts[true, predicted]."""
    return np.bincount(np.asarray(labels) * k + np.asarray(preds), minlength=k * k).reshape(k, k)


def iid(table: pd.DataFrame, classes: list[str], boot: Bootstrap) -> IIDResult:
    """Accuracy on the test split (every model), its confusion matrix (all models' decisions
    together) and each class's recall."""
    rows = table[table.split == "test"].assign(correct=lambda t: (t.pred == t.label) * 1.0)
    labels, preds = rows.label.to_numpy(np.int64), rows.pred.to_numpy(np.int64)
    cm = confusion_matrix(labels, preds, len(classes))
    with np.errstate(invalid="ignore"):
        recall = np.diag(cm) / cm.sum(1)
    return IIDResult(accuracy=boot.mean("iid:accuracy", by_model(rows, "image_id", None,
                                                                 "correct")),
                     confusion=cm.tolist(),
                     class_accuracy={c: (None if np.isnan(r) else float(r))
                                     for c, r in zip(classes, recall)})


def worst_group(table: pd.DataFrame, exp: Experiment, boot: Bootstrap) -> list[WorstGroup]:
    """For each factor paired with the classes in training, on the balanced test split: the
    groups are class x the class the factor's value indicates (Waterbirds, CelebA); the
    worst-group accuracy is each model's lowest group accuracy, the group chosen again in every
    resample (so the interval carries the selection), and the average-group accuracy beside it.
    """
    rows = table[table.split == "test_balanced"]
    if rows.empty:
        return []
    rows = rows.assign(correct=lambda t: (t.pred == t.label) * 1.0)
    first = rows[rows.replicate == rows.replicate.min()].sort_values("image_id")
    correct = by_model(rows, "image_id", None, "correct")           # (models, images)
    out = []
    for name, spec in exp.factors.items():
        if spec.correlation is None or spec.correlation.rho == 0:
            continue
        says = np.array([-1 if (c := indicated_class(exp, name, v)) is None else c
                         for v in first[name].to_numpy(dtype=object)])
        groups = first.label.to_numpy() * (len(exp.classes) + 1) + (says + 1)
        ids, member = np.unique(groups, return_inverse=True)
        onehot = np.eye(len(ids))[member]                             # (images, groups)

        def accuracies(w):
            with np.errstate(invalid="ignore", divide="ignore"):
                return total(w, correct[:, :, None] * onehot) / (w @ onehot)[:, None, :]

        key = f"worst_group:{name}"
        n, models = correct.shape[1], correct.shape[0]
        worst = boot.estimate(key, n, models, lambda w: np.nanmin(accuracies(w), -1))
        average = boot.estimate(key, n, models, lambda w: np.nanmean(accuracies(w), -1))
        at_point = np.nanmean(accuracies(np.ones((1, n)))[0], 0)
        g = int(ids[np.nanargmin(at_point)])
        cls, said = divmod(g, len(exp.classes) + 1)
        out.append(WorstGroup(
            factor=name, accuracy=worst, average=average, groups=len(ids),
            smallest=int(onehot.sum(0).min()),
            group=f"{exp.classes[cls]} with {name} of "
                  + ("no class" if said == 0 else exp.classes[said - 1])))
    return out


def reliance_ranking(probes: dict[str, dict[str, BaseModel]]) -> list[RelianceEntry]:
    """Each factor's reliance: one pre-declared measure (the evidence of the kind with the
    lowest precedence, its first probe), never the largest of several; factors ranked by it,
    highest first. Every piece of evidence is kept beside it."""
    evidence: dict[str, list[tuple[int, Evidence]]] = {}
    for name, kind in PROBE_KINDS.items():
        for key, result in probes.get(name, {}).items():
            for factor, item in kind.reliance(key, result):
                if item.estimate.defined:
                    evidence.setdefault(factor, []).append((kind.precedence, item))
    chosen = {f: min(items, key=lambda x: x[0])[1] for f, items in evidence.items()}
    order = sorted(chosen, key=lambda f: (-chosen[f].estimate.value, f))
    return [RelianceEntry(rank=rank, factor=f, reliance=chosen[f].estimate, set_by=chosen[f].ref,
                          evidence=[e for _, e in evidence[f]])
            for rank, f in enumerate(order, 1)]


def robustness_table(probes: dict[str, dict[str, BaseModel]]) -> list[Fragility]:
    """Every unseen condition of every probe, the largest accuracy drop first."""
    rows = [row for name, kind in PROBE_KINDS.items()
            for key, result in probes.get(name, {}).items()
            for row in kind.robustness(key, result) if row.drop.defined]
    return sorted(rows, key=lambda r: (-r.drop.value, r.factor, r.condition))


def unreliable(exp: Experiment, probed: set[str]) -> list[str]:
    """Probed factors that indicate no class in training: no reliance is defined for them."""
    return [f for f in sorted(probed) if f != exp.label.factor and not (
        f in exp.factors and exp.factors[f].correlation is not None
        and exp.factors[f].correlation.rho > 0)]

