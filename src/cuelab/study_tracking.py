"""A study in MLflow: one parent run per study, a child run per variant carrying the values the
variant varies (as parameters) and its measures (as metrics) on the same run, so that MLflow's
compare and parallel-coordinates views plot an axis (colour's rho) against a measure (reliance on
colour) directly.

The MLflow experiment is `study <name>`. The parent holds the study's spec (parameters), its
crossovers (metrics: the crossing and its interval's ends) and the study report with its tables
(artifacts). Each variant's own runs (training, replicates, evaluation) stay in the variant's
MLflow experiment (named after the variant); its child run here names it (tag
`cuelab.variant_experiment`). Logging the same study again updates its runs; a changed study
file (another spec) gets a new parent.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from . import tracking
from .study import Study, _text
from .study_report import analyse

METRIC_NAME = re.compile(r"[^A-Za-z0-9_\-. /]")


def metric_key(name: str) -> str:
    """A name as MLflow accepts it ('a = b' -> 'a equals b', other signs -> '_')."""
    return METRIC_NAME.sub("_", name.replace(" = ", " equals "))


def log_study(study: Study, runs: str | Path, artifacts: list[Path] = (),
              uri: str | None = None) -> str:
    """Log the study's finished variants (from `runs`, as `study report` reads them) to MLflow;
    returns what it did, in a sentence."""
    import mlflow
    from mlflow import MlflowClient

    analysis = analyse(study, runs)
    finished, found = analysis.finished, analysis.crossovers
    tracking.connect(uri)
    spec = study.spec.model_dump(mode="json")
    if spec["draws"] == 1:  # a study file from before draws keeps its parent run
        del spec["draws"]
    fingerprint = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]
    name = f"study {study.name}"
    with tracking.mlflow_errors(f"logging the study {study.name!r}"):
        exp_id = tracking.experiment_id(name)
        client = MlflowClient()
        parent = _find(client, exp_id, f"tags.`cuelab.study_spec` = '{fingerprint}' and "
                                       "tags.`cuelab.kind` = 'study'")
        with mlflow.start_run(run_id=parent, experiment_id=exp_id, run_name=name, tags=None
                              if parent else {"cuelab.kind": "study", "cuelab.study": study.name,
                                              "cuelab.study_spec": fingerprint}) as run:
            parent = run.info.run_id
            if not client.get_run(parent).data.params:
                mlflow.log_params({"base": str(study.spec.base), "combine": study.spec.combine,
                                   "replicates": study.spec.replicates,
                                   "variants": len(study.variants()),
                                   **({"draws": study.spec.draws} if study.spec.draws > 1
                                      else {}),
                                   **{f"axis {k}": ", ".join(map(_text, v))
                                      for k, v in study.spec.axes.items()},
                                   **{f"set {k}": _text(v) for k, v in study.spec.set.items()}})
            metrics = {}
            for c in found:  # where one was found and its interval is not the whole range
                if c.x is not None and c.reaches != "start and end":
                    key = metric_key(f"{c.axis} where {c.what}"  # the axis's value there
                                     + (f" ({c.series})" if c.series else ""))
                    metrics[key] = c.x
                    if c.low is not None:
                        metrics[f"{key}_low"], metrics[f"{key}_high"] = c.low, c.high
            if metrics:
                mlflow.log_metrics(metrics)
            for path in artifacts:
                if Path(path).is_file():
                    mlflow.log_artifact(str(path))
        for f in finished:
            v = f.variant
            child = _find(client, exp_id, f"tags.`mlflow.parentRunId` = '{parent}' and "
                                          f"tags.`cuelab.variant` = '{v.name}'")
            with mlflow.start_run(run_id=child, experiment_id=exp_id, run_name=v.name,
                                  tags=None if child else {
                                      "mlflow.parentRunId": parent, "cuelab.kind": "variant",
                                      "cuelab.study": study.name, "cuelab.variant": v.name,
                                      "cuelab.variant_experiment": v.experiment.name,
                                      "dvc.exp_name": v.name}):
                if child is None:
                    mlflow.log_params({k: _text(x) for k, x in v.values.items()}
                                      | ({"seed": v.experiment.seed, "draw": v.draw}
                                         if study.spec.draws > 1 else {}))
                metrics = {}
                for measure, e in f.measures.items():
                    if e.value is None:
                        continue
                    key = metric_key(measure)
                    metrics[key] = e.value
                    if e.low is not None and e.high is not None:
                        metrics[f"{key}_low"], metrics[f"{key}_high"] = e.low, e.high
                mlflow.log_metrics(metrics)
    return (f"MLflow ({mlflow.get_tracking_uri()}): experiment '{name}', parent run {parent} "
            f"with {len(finished)} variant runs (their varied values and measures)")


def _find(client, exp_id: str, query: str) -> str | None:
    found = client.search_runs([exp_id], filter_string=query, max_results=1)
    return found[0].info.run_id if found else None
