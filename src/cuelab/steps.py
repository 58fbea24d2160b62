"""What each step reads: the parts of the experiment, and the code its outputs depend on.

This is the one place that knows it. `cuelab params resolve` writes, for every step, the parts it
reads with every default filled in (data/params/<step>.json); each DVC stage depends on its file
rather than on sections of params.yaml. So a section left out of params.yaml is just its
defaults, a changed default in the schema re-runs exactly the steps that read it, and a renamed
experiment re-runs what records the name. The code a step depends on is the import closure of
its module, read from the source; tests/test_steps.py fails when dvc.yaml disagrees with either.
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass
from pathlib import Path

from .atomic import write_bytes
from .config import Experiment, load_experiment

PACKAGE = Path(__file__).resolve().parent
DATA_SECTIONS = ("seed", "label", "factors", "splits", "sweeps", "conflicts",
                 "background_protocol")


@dataclass(frozen=True)
class Step:
    module: str                  # where the step's function lives
    reads: tuple[str, ...]       # experiment keys ("render", or "render.resolution")


STEPS = {
    "sample": Step("cuelab.sampling", DATA_SECTIONS),
    "render": Step("cuelab.render", ("render",)),
    "sensor": Step("cuelab.sensor", ("sensor",)),
    "validate": Step("cuelab.validate", ("name",) + DATA_SECTIONS + ("render.resolution",)),
    "train": Step("cuelab.train", ("name", "seed", "label", "train")),
    "evaluate": Step("cuelab.evaluate", ("name", "seed", "label", "factors", "sweeps",
                                         "conflicts", "background_protocol", "evaluate",
                                         "train.device")),
    "report": Step("cuelab.report", ("name", "label", "factors", "sweeps", "conflicts",
                                     "background_protocol")),
}


def reads(exp: Experiment, step: str) -> dict:
    """The parts of the experiment `step` reads, defaults filled in, as plain JSON values."""
    whole = exp.model_dump(mode="json")
    out: dict = {}
    for key in STEPS[step].reads:
        head, _, rest = key.partition(".")
        value = whole[head] if not rest else {rest: whole[head][rest]}
        out[head] = ({**out.get(head, {}), **value} if rest else value)
    return out


def resolve(params: str | Path | Experiment, out: str | Path = "data/params") -> list[Path]:
    """Write data/params/<step>.json for every step (`cuelab params resolve`)."""
    exp = params if isinstance(params, Experiment) else load_experiment(params)
    out = Path(out)
    written = []
    for step in STEPS:
        path = out / f"{step}.json"
        write_bytes(path, (json.dumps(reads(exp, step), indent=1, sort_keys=True) + "\n").encode())
        written.append(path)
    return written


# --- the code a step depends on ------------------------------------------------------------------

def module_file(module: str) -> Path | None:
    """The source file of a cuelab module (a package's __init__.py), else None."""
    parts = module.split(".")
    if parts[0] != "cuelab":
        return None
    base = PACKAGE.joinpath(*parts[1:])
    for path in (base / "__init__.py", base.with_suffix(".py")):
        if path.is_file():
            return path
    return None


def _module_of(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every cuelab module `path` imports, at the top or inside functions."""
    here = _module_of(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names}  # `from . import scenes`
    return {m for m in found if module_file(m) is not None}


def code_closure(module: str) -> set[Path]:
    """The source files a module's behaviour depends on: it, what it imports, transitively,
    and the packages around each (importing a module runs its packages' __init__)."""
    todo, seen = [module], set()
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for i in range(1, len(parts) + 1):
            path = module_file(".".join(parts[:i]))
            if path is not None and path not in seen:
                seen.add(path)
                todo += sorted(_imports(path))
    return seen
