"""The report step: the evaluation's results -> the trace report, one self-contained HTML page.

`report(params, evaluation_dir, out, validation, train_metrics)` reads reports/evaluation/
results.json (`cuelab.results`) with its attribution maps, and the optional summaries of the data
gate (metrics/validation.json) and of training (metrics/train.json), and writes
reports/trace_report.html: the verdict in plain words with its numbers, the ranking of the
factors, the evidence under each (each probe kind's section), the IID accuracy, attribution
examples, and the experiment that produced it.

The page is a pure function of those inputs (no clock, no network, no random draw): the same
results give the same bytes. The layout lives in `page`, the sentences over the whole page in
`sentences`, the pieces every page and probe kind shares in `words`, `figures` and `markup`.

This module imports the page only inside `report`: the probe kinds (`cuelab.probes`) import
`words`, `figures` and `markup` from this package, and the page imports the probe kinds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..atomic import write_text
from ..config import Experiment, load_experiment
from ..errors import CuelabError
from . import words


@dataclass
class ReportSummary:
    out: Path
    bytes: int
    findings: list[tuple[str, str]]           # (factor, sentence) of the verdict
    lede: str
    warnings: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"wrote {self.out} ({self.bytes / 1e6:.1f} MB, self-contained: open it in any "
                 "browser)", f"  {self.lede}"]
        lines += [f"  - {words.title(f)}: {text}" for f, text in self.findings]
        lines += [f"  ! {w}" for w in self.warnings]
        return "\n".join(lines)


def report(params: str | Path | Experiment, evaluation_dir: str | Path = "reports/evaluation",
           out: str | Path = "reports/trace_report.html",
           validation: str | Path | None = "metrics/validation.json",
           train_metrics: str | Path | None = "metrics/train.json") -> ReportSummary:
    """The `report` step. `validation` and `train_metrics` are optional: a missing file leaves
    its part of the page saying so."""
    from ..results import load_results
    from . import sentences as say
    from .figures import Pictures
    from .page import correlations, probes_by_factor, trace_page

    exp, params_text = experiment_and_text(params)
    evaluation_dir = Path(evaluation_dir)
    results = load_results(evaluation_dir)
    _check_same_experiment(results.experiment, results.classes, exp, params)
    page = trace_page(results, exp, params_text, evaluation_dir,
                      _optional_json(validation, VALIDATION_SHAPES),
                      _optional_json(train_metrics),
                      Pictures.drawn(evaluation_dir, results.files.figures))
    out = Path(out)
    write_text(out, page)
    warnings = say.unprobed_warnings(correlations(exp), set(probes_by_factor(results)))
    if problem := _log_to_the_evaluation_run(evaluation_dir, out):
        warnings.append(problem)
    return ReportSummary(
        out, len(page.encode()),
        [(f, text) for f, text, _ in say.findings(results, exp.label.factor)],
        say.lede(results), warnings)


def _log_to_the_evaluation_run(evaluation_dir: Path, page: Path) -> str | None:
    """The page, as an artifact of the MLflow run of the evaluation it shows (when that run is
    in the configured store). The page is written either way: a problem here is a warning."""
    from .. import tracking

    link = tracking.read_run_link(evaluation_dir)
    if not link:
        return f"not logged to MLflow: {evaluation_dir / tracking.RUN_FILE} is missing"
    try:
        tracking.connect()
        if not tracking.run_exists(link.get("run_id")):
            return (f"not logged to MLflow: the evaluation's run {link.get('run_id')} is not in "
                    f"{tracking.tracking_uri()}")
        import mlflow

        with tracking.mlflow_errors("logging the trace report"):
            mlflow.MlflowClient().log_artifact(link["run_id"], str(page))
    except CuelabError as e:
        return f"not logged to MLflow: {e}"
    return None


def experiment_and_text(params: str | Path | Experiment) -> tuple[Experiment, str]:
    """The experiment and its text as the page shows it (the user's own file when there is one)."""
    if isinstance(params, Experiment):
        return params, yaml.safe_dump(params.model_dump(mode="json", exclude_defaults=True),
                                      sort_keys=False)
    return load_experiment(params), Path(params).read_text()


def _check_same_experiment(name: str, classes: list[str], exp: Experiment, params) -> None:
    if name != exp.name or classes != exp.classes:
        source = params if not isinstance(params, Experiment) else "the experiment"
        raise CuelabError(
            f"the evaluation is of experiment {name!r} (classes {', '.join(classes)}), but "
            f"{source} is {exp.name!r} (classes {', '.join(exp.classes)}): run `cuelab "
            "evaluate` with these params, or report with the params it was run with")


def _optional_json(path: str | Path | None, shapes: dict | None = None) -> dict | None:
    """A summary the page shows if it is there (None if not), checked at the door: JSON, an
    object, and the keys in `shapes` (that it has) of their types."""
    if path is None or not Path(path).is_file():
        return None
    way_out = "remove it or run the step that writes it again"
    try:
        data = json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CuelabError(f"{path} is not valid JSON ({e}); {way_out}") from None
    if not isinstance(data, dict):
        raise CuelabError(f"{path}: holds a JSON {type(data).__name__}, not a step's summary "
                          f"(an object); {way_out}")
    wrong = [f"{key} = {data[key]!r}"[:80] + f" (not {kind})"
             for key, (fits, kind) in (shapes or {}).items() if key in data and not fits(data[key])]
    if wrong:
        raise CuelabError(f"{path}: not a step's summary: {'; '.join(wrong)}; {way_out}")
    return data


def _count(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


# metrics/validation.json, as the page reads it: a test of each key's value, and it in words
VALIDATION_SHAPES = {
    "passed": (lambda v: v is None or isinstance(v, bool), "true or false"),
    "expectations": (_count, "a count"), "failed": (_count, "a count"),
    "images": (_count, "a count"),
    "failures": (lambda v: isinstance(v, list) and all(isinstance(f, dict) for f in v),
                 "a list of failed expectations, each an object")}
