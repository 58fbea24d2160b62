"""The shipped colour dose-response study (6 variants x 3 replicates), timed in one run, each part
in a fresh git + DVC copy of the project:

  study        `cuelab study run studies/colour-dose-response.yaml`: the variants as queued DVC
               experiments, renders shared through the render cache. Target: <= 30 min.
  renders      the images Blender rendered for the whole study (the render cache's entries)
               against one experiment's (the base's distinct renders). Target: <= 1.5x.
  replicate    one more replicate of one variant, run after the study (`dvc exp run` with
               train.replicates + 1): the stages it reruns, what it renders, its time against
               the same variant run again as it was. Target: train, evaluate and report only,
               nothing rendered.
  independent  the same variants, each a `dvc repro` of a project of its own with no render
               cache (their sum). Target: the study >= 3x faster.

Each line is printed when its part is done (the independent runs take longest and come last).
`--runs DIR` keeps the study's gathered results (for `cuelab study report`).

    .venv/bin/python benchmarks/study.py [--runs runs/colour-dose-response] [--skip-independent]
"""

import argparse
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).parent))
from pipeline import ENV, ROOT, project, sh  # noqa: E402  (the same fresh copies)

STUDY = ROOT / "studies" / "colour-dose-response.yaml"


def dvc_stages_run(*cmd, cwd) -> tuple[float, list[str]]:
    """Time a DVC command and list the stages it ran."""
    import subprocess

    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, env=ENV, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"{' '.join(cmd)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return time.perf_counter() - start, re.findall(r"Running stage '([^']+)'", done.stdout)


def renders_of(repo: Path) -> int:
    """The distinct renders of a project's scenes table (data/scenes.parquet)."""
    import pandas as pd

    return pd.read_parquet(repo / "data" / "scenes.parquet", columns=["render_id"]) \
        .render_id.nunique()


def cache_entries(repo: Path) -> int:
    return sum(1 for _ in (repo / ".cuelab" / "render-cache").rglob("*.npz"))


def set_key(params: dict, key: str, value) -> None:
    *path, last = key.split(".")
    for part in path:
        params = params.setdefault(part, {})
    params[last] = value


def main() -> None:
    from cuelab.study import load_study

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=Path, help="keep the study's gathered results here")
    ap.add_argument("--skip-independent", action="store_true",
                    help="skip the independent runs (the longest part)")
    args = ap.parse_args()
    study = load_study(STUDY)
    variants = study.variants()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        repo = project(tmp / "study")
        shutil.copytree(ROOT / "studies", repo / "studies")
        sh("git", "add", "-A", cwd=repo)
        sh("git", "commit", "-qm", "studies", cwd=repo)
        runs = tmp / "runs"
        whole = sh("cuelab", "study", "run", "studies/colour-dose-response.yaml", "--runs",
                   str(runs), cwd=repo)
        print(f"study        {len(variants)} variants x {study.spec.replicates} replicates  "
              f"{whole / 60:6.1f} min   (target <= 30 min: "
              f"{'ok' if whole <= 1800 else 'MISSED'})", flush=True)
        if args.runs:
            shutil.copytree(runs, args.runs, dirs_exist_ok=True)

        one = project(tmp / "one")  # the base experiment's scenes: what one experiment renders
        sh("cuelab", "sample", "--params", "params.yaml", "--out", "data/scenes.parquet", cwd=one)
        rendered, single = cache_entries(repo), renders_of(one)
        print(f"renders      the study rendered {rendered} images, one experiment {single}  "
              f"({rendered / single:.2f}x; target <= 1.5x: "
              f"{'ok' if rendered <= 1.5 * single else 'MISSED'})", flush=True)

        v = variants[len(variants) // 2]
        sets = _overrides(study, v)
        again, _ = dvc_stages_run("dvc", "exp", "run", "-n", f"{v.name}-again", "--force",
                                  *sets, cwd=repo)
        more = sets + ["-S", f"++train.replicates={study.spec.replicates + 1}"]
        before = cache_entries(repo)
        plus, stages = dvc_stages_run("dvc", "exp", "run", "-n", f"{v.name}-plus-one", *more,
                                      cwd=repo)
        new = cache_entries(repo) - before
        ok = set(stages) <= {"params", "train", "evaluate", "report"} and new == 0
        print(f"replicate    {v.name} with {study.spec.replicates + 1} replicates  "
              f"{plus:6.1f} s, reran {', '.join(stages)}, rendered {new}; the variant forced "
              f"again (every stage, renders from the cache) {again:6.1f} s  (target: train, "
              f"evaluate, report only: {'ok' if ok else 'MISSED'})", flush=True)

        if args.skip_independent:
            return
        total = 0.0
        base = yaml.safe_load((ROOT / "params.yaml").read_text())
        for i, v in enumerate(variants):
            params = yaml.safe_load(yaml.safe_dump(base))
            for key, value in {**study.spec.set, **v.values,
                               "train.replicates": study.spec.replicates, "name": v.name}.items():
                set_key(params, key, value)
            alone = project(tmp / f"alone-{i}", params)
            seconds = sh("env", "CUELAB_RENDER_CACHE=off", "dvc", "repro", cwd=alone)
            total += seconds
            print(f"             independent {v.name}: {seconds / 60:.1f} min", flush=True)
            shutil.rmtree(alone)
        print(f"independent  {len(variants)} variants, each its own dvc repro  "
              f"{total / 60:6.1f} min   (the study {total / whole:.2f}x faster; target >= 3x: "
              f"{'ok' if total >= 3 * whole else 'MISSED'})", flush=True)


def _overrides(study, variant) -> list[str]:
    from cuelab.study_run import overrides

    return overrides(study, variant)


if __name__ == "__main__":
    main()
