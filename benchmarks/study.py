"""The shipped colour dose-response study (6 variants x 3 replicates), timed in one run, each part
in a fresh git + DVC copy of the project:

  study        `cuelab study run studies/colour-dose-response.yaml`: the variants as queued DVC
               experiments, renders shared through the render cache. Target: <= 30 min.
  renders      the images Blender rendered for the whole study (the render cache's entries)
               against one experiment's (the base's distinct renders). Target: <= 1.5x.
  replicate    one more replicate of one variant, run after the study (`dvc exp apply` the
               variant, then `dvc exp run` with train.replicates + 1): the stages it reruns,
               the images it renders and the models it trains (new entries of the render and
               model caches), its time. Target: train, evaluate and report only; nothing
               rendered; one model trained.
  independent  the same variants, each a `dvc repro` of a project of its own with no shared
               cache (their sum; `--independent N`: the first N, the sum extrapolated from their
               mean and said so). Target: the study >= 3x faster.
  training     the seconds the study's models took to train (the loop's own clock, kept in the
               model cache): a floor no study that trains those models can go under, and so
               the most it can gain over the independent runs.

Each line is printed when its part is done (the independent runs take longest and come last).
`--runs DIR` keeps the study's gathered results (for `cuelab study report`).

    .venv/bin/python benchmarks/study.py [--runs runs/colour-dose-response] [--independent N]
                                         [--jobs N]
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


def cache_entries(repo: Path, cache: str = "render-cache", suffix: str = "npz") -> int:
    return sum(1 for _ in (repo / ".cuelab" / cache).rglob(f"*.{suffix}"))


def training_seconds(repo: Path) -> tuple[int, float]:
    """The models in a project's model cache, and the seconds their training loops took."""
    import torch

    entries = [torch.load(f, map_location="cpu", weights_only=True)
               for f in (repo / ".cuelab" / "model-cache").rglob("*.pt")]
    return len(entries), sum(e["state"]["seconds"] for e in entries)


def set_key(params: dict, key: str, value) -> None:
    *path, last = key.split(".")
    for part in path:
        params = params.setdefault(part, {})
    params[last] = value


def main() -> None:
    from cuelab.study import load_study

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=Path, help="keep the study's gathered results here")
    ap.add_argument("--independent", type=int, metavar="N",
                    help="run only the first N variants independently (default: all; 0: none)")
    ap.add_argument("--jobs", "-j", type=int, default=1, metavar="N",
                    help="the study's queue workers (`cuelab study run -j N`; default 1)")
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
                   str(runs), "-j", str(args.jobs), cwd=repo)
        print(f"study        {len(variants)} variants x {study.spec.replicates} replicates, "
              f"{args.jobs} queue worker{'s' if args.jobs != 1 else ''}  "
              f"{whole / 60:6.1f} min   (target <= 30 min: "
              f"{'ok' if whole <= 1800 else 'MISSED'})", flush=True)
        if args.runs:
            shutil.copytree(runs, args.runs, dirs_exist_ok=True)
        trained, floor = training_seconds(repo)

        one = project(tmp / "one")  # the base experiment's scenes: what one experiment renders
        sh("cuelab", "sample", "--params", "params.yaml", "--out", "data/scenes.parquet", cwd=one)
        rendered, single = cache_entries(repo), renders_of(one)
        print(f"renders      the study rendered {rendered} images, one experiment {single}  "
              f"({rendered / single:.2f}x; target <= 1.5x: "
              f"{'ok' if rendered <= 1.5 * single else 'MISSED'})", flush=True)

        v = variants[len(variants) // 2]
        # as a researcher adds one: the variant's results into the workspace, then one more
        sh("dvc", "exp", "apply", v.name, cwd=repo)
        more = _overrides(study, v) + ["-S", f"++train.replicates={study.spec.replicates + 1}"]
        renders, models = cache_entries(repo), cache_entries(repo, "model-cache", "pt")
        plus, stages = dvc_stages_run("dvc", "exp", "run", "-n", f"{v.name}-plus-one", *more,
                                      cwd=repo)
        renders = cache_entries(repo) - renders
        models = cache_entries(repo, "model-cache", "pt") - models
        ok = set(stages) <= {"params", "train", "evaluate", "report"} and renders == 0 \
            and models == 1
        print(f"replicate    {v.name} with {study.spec.replicates + 1} replicates  "
              f"{plus:6.1f} s, reran {', '.join(stages)}, rendered {renders}, trained {models} "
              f"model{'s' if models != 1 else ''}  (target: train, evaluate, report only, "
              f"nothing rendered, one model trained: {'ok' if ok else 'MISSED'})", flush=True)

        n = len(variants) if args.independent is None else min(args.independent, len(variants))
        if n == 0:
            return
        total = 0.0
        base = yaml.safe_load((ROOT / "params.yaml").read_text())
        for i, v in enumerate(variants[:n]):
            params = yaml.safe_load(yaml.safe_dump(base))
            for key, value in {**study.spec.set, **v.values,
                               "train.replicates": study.spec.replicates, "name": v.name}.items():
                set_key(params, key, value)
            alone = project(tmp / f"alone-{i}", params)
            seconds = sh("env", "CUELAB_RENDER_CACHE=off", "CUELAB_MODEL_CACHE=off", "dvc",
                         "repro", cwd=alone)
            total += seconds
            print(f"             independent {v.name}: {seconds / 60:.1f} min", flush=True)
            shutil.rmtree(alone)
        said = f"{len(variants)} variants, each its own dvc repro" if n == len(variants) else \
            f"{n} of {len(variants)} variants run alone, the sum for {len(variants)} " \
            "extrapolated from their mean"
        total *= len(variants) / n
        print(f"independent  {said}  {total / 60:6.1f} min   (the study {total / whole:.2f}x "
              f"faster; target >= 3x: {'ok' if total >= 3 * whole else 'MISSED'})", flush=True)
        print(f"training     the study's {trained} models trained in {floor / 60:.1f} min, "
              f"{floor / whole:.0%} of the study: with nothing else to do it would still be at "
              f"most {total / floor:.2f}x faster than the independent runs", flush=True)


def _overrides(study, variant) -> list[str]:
    from cuelab.study_run import overrides

    return overrides(study, variant)


if __name__ == "__main__":
    main()
