"""dvc.yaml cannot drift from what each step reads: its experiment parts, its code, its files."""

import json
import shlex
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, tiny_experiment
from cuelab.cli import build_parser
from cuelab.config import experiment_from_dict
from cuelab.steps import PACKAGE, STEPS, code_closure, reads, resolve

DVC = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
SRC = PACKAGE.parent
INPUTS = ("params", "scenes", "renders", "images", "models", "evaluation", "validation",
          "train_metrics")
OUTPUTS = ("out", "metrics", "plots", "docs", "summary")
UNVERSIONED = {("validate", "docs")}  # Data Docs: stamped with the time of the run


def _paths(entries) -> list[str]:
    return [next(iter(e)) if isinstance(e, dict) else e for e in entries or []]


def _covered(deps: list[str]) -> set[Path]:
    files = set()
    for dep in deps:
        path = ROOT / dep
        files |= set(path.rglob("*.py")) if path.is_dir() else {path}
    return {f.resolve() for f in files}


def minimal_cover(files: set[Path]) -> list[str]:
    """The shortest dvc.yaml deps for these source files: whole folders where all is used."""
    out = []
    def walk(folder: Path) -> None:
        for path in sorted(folder.iterdir()):
            if path.is_dir() and path.name != "__pycache__":
                inside = set(path.rglob("*.py"))
                if inside and inside <= files:
                    out.append(path)
                elif inside & files:
                    walk(path)
            elif path.suffix == ".py" and path in files:
                out.append(path)
    walk(SRC / "cuelab")
    return [str(p.relative_to(ROOT)) for p in out]



@pytest.mark.parametrize("stage", sorted(DVC))
def test_stage_code_deps_are_the_import_closure_of_its_step(stage):
    module = "cuelab.steps" if stage == "params" else STEPS[stage].module
    needed = {p.resolve() for p in code_closure(module)}
    deps = [d for d in _paths(DVC[stage].get("deps")) if d.startswith("src/")]
    expected = minimal_cover(needed)
    assert _covered(deps) == needed, (
        f"dvc.yaml stage {stage}: its code deps should be\n"
        + "\n".join(f"      - {d}" for d in expected))


@pytest.mark.parametrize("stage", sorted(STEPS))
def test_stage_depends_on_its_resolved_experiment_and_its_cli_files(stage):
    spec = DVC[stage]
    assert "params" not in spec, (f"stage {stage}: depend on data/params/{stage}.json, not on "
                                  "sections of params.yaml (they may be left out)")
    deps, outs = _paths(spec.get("deps")), _paths(spec.get("outs")) + _paths(spec.get("metrics"))
    assert f"data/params/{stage}.json" in deps
    argv = shlex.split(spec["cmd"])
    assert argv[:2] == ["cuelab", stage]
    args = vars(build_parser().parse_args(argv[1:]))
    for name in INPUTS:  # read, except the model folder that training writes
        value = args.get(name)
        if value is not None and name != "params":
            assert str(value) in deps + (outs if name == "models" else []), (
                f"stage {stage}: --{name} {value} is neither a dep nor an output")
    for name in OUTPUTS:
        value = args.get(name)
        if (stage, name) in UNVERSIONED:
            assert str(value) not in outs, f"stage {stage}: --{name} {value} is not reproducible"
        elif value is not None:
            assert str(value) in outs, f"stage {stage}: --{name} {value} is not an output"


def test_params_stage_tracks_the_whole_file_and_writes_every_steps_part():
    spec = DVC["params"]
    assert spec["params"] == [{"params.yaml": None}]
    assert _paths(spec["outs"]) == ["data/params"]
    assert set(STEPS) <= set(DVC)


def test_resolved_parts_hold_defaults_and_only_what_a_step_reads(tmp_path):
    exp = experiment_from_dict(tiny_experiment())  # no render/train sections: defaults
    resolve(exp, tmp_path)
    render = json.loads((tmp_path / "render.json").read_text())
    assert render == {"render": exp.render.model_dump(mode="json")}
    assert render["render"]["samples"] == 4  # the schema's default
    validate = json.loads((tmp_path / "validate.json").read_text())
    assert validate["render"] == {"resolution": exp.render.resolution}
    assert "train" not in validate
    train = reads(exp, "train")
    assert set(train) == {"name", "seed", "label", "train"}
    # a renamed experiment changes the parts of the steps that record the name, only those
    renamed = experiment_from_dict(tiny_experiment(name="tiny-renamed"))
    changed = {s for s in STEPS if reads(renamed, s) != reads(exp, s)}
    assert changed == {s for s, step in STEPS.items() if "name" in step.reads}
    assert "evaluate" in changed and "render" not in changed
