"""Compile the Kubeflow pipeline, or run it here with kfp's local runner.

The pipeline and its components live at the project's top level (pipelines/, components/), beside
dvc.yaml; like `dvc`, these commands run from the project directory.
"""

from __future__ import annotations

import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from .config import load_experiment
from .errors import CuelabError


def _project_root() -> Path:
    for d in [Path.cwd(), *Path.cwd().parents]:
        if (d / "pipelines" / "cuelab_pipeline.py").is_file():
            return d
    raise CuelabError(f"no pipelines/cuelab_pipeline.py in {Path.cwd()} or above: run "
                      "`cuelab pipeline` from the cuelab project directory")


def load_pipeline():
    root = str(_project_root())
    if root not in sys.path:
        sys.path.insert(0, root)
    from pipelines.cuelab_pipeline import cuelab_pipeline

    return cuelab_pipeline


def compile_pipeline(out: str | Path) -> Path:
    from kfp import compiler

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".tmp-{out.name}")  # kfp insists on a .yaml suffix
    compiler.Compiler().compile(load_pipeline(), str(tmp))
    tmp.replace(out)
    return out


@dataclass
class LocalRun:
    outputs: dict[str, Path]
    seconds: float

    def __str__(self) -> str:
        lines = [f"kfp.local ran the pipeline in {self.seconds:.1f} s; its outputs:"]
        lines += [f"  {name}: {path}" for name, path in self.outputs.items()]
        return "\n".join(lines)


def run_local(params: str | Path, workdir: str | Path) -> LocalRun:
    """Run the whole pipeline with kfp.local's SubprocessRunner, in this Python environment."""
    from kfp import local

    load_experiment(params)  # fail here, with the usual message, not inside a component
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(workdir))
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # our image's name lacks "python"
        warnings.filterwarnings("ignore", ".*no effect in the current local runner")
        run = load_pipeline()(params_yaml=Path(params).read_text())
    outputs = {name: Path(artifact.path) for name, artifact in run.outputs.items()}
    return LocalRun(outputs, time.perf_counter() - start)
