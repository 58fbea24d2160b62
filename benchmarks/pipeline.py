"""The whole pipeline as users run it, timed in one run, each in a fresh git + DVC copy of the
project:

  default   `dvc repro` of the default experiment (params.yaml), every stage. Target: <= 10 min.
  eval      `dvc repro` after changing one evaluation parameter: only the evaluation stages
            rerun. Target: <= 60 s.
  no-op     `dvc repro` with nothing changed. Target: <= 5 s.
  models    `cuelab evaluate` of the default's N trained replicates against the same with one
            of them. Target: <= N x.
  kfp       the kfp.local run of a small experiment against `dvc repro` of the same, in the same
            run. Target: <= 2x.

    .venv/bin/python benchmarks/pipeline.py [--skip-default]
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ENV = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1",
       "MLFLOW_DISABLE_TELEMETRY": "true", "GIT_AUTHOR_NAME": "bench",
       "GIT_AUTHOR_EMAIL": "bench@localhost", "GIT_COMMITTER_NAME": "bench",
       "GIT_COMMITTER_EMAIL": "bench@localhost"}
SMALL = {"splits": {"train": 120, "val": 40, "test": 40},
         "render": {"resolution": 32, "samples": 2},
         "train": {"epochs": 3}, "evaluate": {"bootstrap": 200, "attribution_images": 8}}


def sh(*cmd, cwd) -> float:
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, env=ENV, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"{' '.join(cmd)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return time.perf_counter() - start


def project(dest: Path, params: dict | None = None) -> Path:
    """A user's checkout: the project's files in a fresh git + DVC repository."""
    dest.mkdir(parents=True)
    for name in ("dvc.yaml", "params.yaml", "pyproject.toml"):
        shutil.copy(ROOT / name, dest / name)
    for name in ("src",):
        shutil.copytree(ROOT / name, dest / name,
                        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    if params is not None:
        (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"], ["git", "add", "-A"],
                ["git", "commit", "-qm", "init"]):
        sh(*cmd, cwd=dest)
    return dest


def small_experiment() -> dict:
    exp = yaml.safe_load((ROOT / "params.yaml").read_text())
    for key, value in SMALL.items():
        exp[key] = {**exp.get(key, {}), **value}
    exp["sweeps"] = [dict(s, base_scenes=8) for s in exp["sweeps"][:3]]
    exp["conflicts"] = [dict(c, images=24) for c in exp["conflicts"]]
    exp["background_protocol"] = dict(exp["background_protocol"], base_scenes=12)
    return exp


def evaluate_replicates(repo: Path) -> None:
    """The evaluation of every replicate against the same of the first alone (a models folder
    whose models.json lists one), each timed in the same run."""
    import json

    index = json.loads((repo / "models" / "models.json").read_text())
    one = repo / "one-model"
    shutil.copytree(repo / "models", one)
    (one / "models.json").write_text(json.dumps(index | {"replicates": index["replicates"][:1]}))
    times = {}
    for name, models in (("all", repo / "models"), ("one", one)):
        times[name] = sh("cuelab", "evaluate", "--params", "params.yaml", "--scenes",
                         "data/scenes.parquet", "--images", "data/images", "--models",
                         str(models), "--out", f"bench-{name}", "--metrics",
                         f"bench-{name}.json", "--plots", f"bench-{name}-plots", cwd=repo)
    n = len(index["replicates"])
    ratio = times["all"] / times["one"]
    print(f"models   evaluate {n} models vs 1        {times['all']:7.1f} s   ({ratio:.2f}x one "
          f"model's {times['one']:.1f} s; target <= {n}x: {'ok' if ratio <= n else 'MISSED'})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--skip-default", action="store_true",
                    help="skip the default experiment (minutes); time the small one only")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if not args.skip_default:
            repo = project(tmp / "default")
            full = sh("dvc", "repro", cwd=repo)
            print(f"default  dvc repro, every stage        {full:7.1f} s   (target <= 600 s: "
                  f"{'ok' if full <= 600 else 'MISSED'})")
            params = yaml.safe_load((repo / "params.yaml").read_text())
            params.setdefault("evaluate", {})["bootstrap"] = 999
            (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
            rerun = sh("dvc", "repro", cwd=repo)
            print(f"eval     one evaluation parameter      {rerun:7.1f} s   ({rerun / full:.2f}x "
                  f"the full run; target <= 60 s: {'ok' if rerun <= 60 else 'MISSED'})")
            noop = sh("dvc", "repro", cwd=repo)
            print(f"no-op    nothing changed               {noop:7.1f} s   (target <= 5 s: "
                  f"{'ok' if noop <= 5 else 'MISSED'})")
            evaluate_replicates(repo)

        exp = small_experiment()
        repo = project(tmp / "small-dvc", exp)
        dvc = sh("dvc", "repro", cwd=repo)
        kfp_repo = project(tmp / "small-kfp", exp)
        kfp = sh("cuelab", "pipeline", "run-local", "--params", "params.yaml", "--workdir",
                 str(tmp / "kfp-runs"), cwd=kfp_repo)
        print(f"small    dvc repro                     {dvc:7.1f} s")
        print(f"small    kfp.local run-local           {kfp:7.1f} s   ({kfp / dvc:.2f}x dvc repro; "
              f"target <= 2x: {'ok' if kfp <= 2 * dvc else 'MISSED'})")


if __name__ == "__main__":
    main()
