"""The report step: the evaluation's results -> the trace report, one self-contained HTML page.

`report(params, evaluation_dir, out, validation, train_metrics)` reads reports/evaluation/
results.json (schema 1, see `cuelab.evaluate`) with its attribution maps, and the optional
summaries of the data gate (metrics/validation.json) and of training (metrics/train.json), and
writes reports/trace_report.html: the verdict in plain words with its numbers, the ranking of
the factors, the evidence under each (sweep curves, conflict decision matrices, the background
protocol), the IID accuracy, attribution examples, and the experiment that produced it.

The page is a pure function of those inputs (no clock, no network, no random draw): the same
results give the same bytes. Every sentence is generated from the numbers (`sentences`); the
layout lives in `page`, the pictures in `figures`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..atomic import write_text
from ..config import Experiment, load_experiment
from ..errors import CuelabError
from . import sentences as say
from .page import correlations, probes_by_factor, trace_page

SCHEMA = 1


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
        lines += [f"  - {say.title(f)}: {text}" for f, text in self.findings]
        lines += [f"  ! {w}" for w in self.warnings]
        return "\n".join(lines)


def report(params: str | Path | Experiment, evaluation_dir: str | Path = "reports/evaluation",
           out: str | Path = "reports/trace_report.html",
           validation: str | Path | None = "metrics/validation.json",
           train_metrics: str | Path | None = "metrics/train.json") -> ReportSummary:
    """The `report` step. `validation` and `train_metrics` are optional: a missing file leaves
    its part of the page saying so."""
    exp, params_text = _experiment(params)
    evaluation_dir = Path(evaluation_dir)
    results = load_results(evaluation_dir)
    _check_same_experiment(results, exp, params)
    page = trace_page(results, exp, params_text, evaluation_dir,
                      _optional_json(validation), _optional_json(train_metrics))
    out = Path(out)
    write_text(out, page)
    probed = set(probes_by_factor(results, exp))
    return ReportSummary(
        out, len(page.encode()),
        [(f, text) for f, text, _ in say.findings(results, exp.label.factor)],
        say.lede(results), say.unprobed_warnings(correlations(exp), probed))


def load_results(evaluation_dir: str | Path) -> dict:
    """results.json of an evaluation, checked to be the schema this report reads."""
    path = Path(evaluation_dir) / "results.json"
    if not path.is_file():
        raise CuelabError(f"no evaluation results in {evaluation_dir} ({path.name} is missing): "
                          "run `cuelab evaluate` first")
    try:
        results = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CuelabError(f"{path} is not valid JSON ({e}): run `cuelab evaluate` again") \
            from None
    schema = results.get("schema") if isinstance(results, dict) else None
    if schema != SCHEMA:
        raise CuelabError(f"{path}: got results schema {schema!r}; this version of cuelab "
                          f"reads schema {SCHEMA}: run `cuelab evaluate` again with it")
    return results


def _experiment(params: str | Path | Experiment) -> tuple[Experiment, str]:
    """The experiment and its text as the page shows it (the user's own file when there is one)."""
    if isinstance(params, Experiment):
        return params, yaml.safe_dump(params.model_dump(mode="json", exclude_defaults=True),
                                      sort_keys=False)
    return load_experiment(params), Path(params).read_text()


def _check_same_experiment(results: dict, exp: Experiment, params) -> None:
    if results.get("experiment") != exp.name or results.get("classes") != exp.classes:
        source = params if not isinstance(params, Experiment) else "the experiment"
        raise CuelabError(
            f"the evaluation is of experiment {results.get('experiment')!r} (classes "
            f"{', '.join(results.get('classes') or [])}), but {source} is {exp.name!r} (classes "
            f"{', '.join(exp.classes)}): run `cuelab evaluate` with these params, or report "
            "with the params it was run with")


def _optional_json(path: str | Path | None) -> dict | None:
    if path is None or not Path(path).is_file():
        return None
    try:
        data = json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CuelabError(f"{path} is not valid JSON ({e}); remove it or run the step that "
                          "writes it again") from None
    return data if isinstance(data, dict) else None
