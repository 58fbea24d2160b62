"""Reading and validating a 10,000-image dataset, each against a baseline measured in the same run.

  read      `cuelab.data.load_split` of the 10,000-image split, in memory and memory-mapped,
            against reading the same shard files' raw bytes (the disk / page-cache floor).
            Target: under 2 s.
  validate  `cuelab validate` (Great Expectations over the scenes table and per-image statistics,
            Data Docs written) against the per-image statistics pass alone (reading every
            shard, contrast, visible pixels, content hashes). Target: under 30 s on 2 cores.

The dataset is real: the experiment below is sampled, rendered by Blender at 64x64 and put
through the camera, once; it is kept in benchmarks/.cache/ for later runs (a few minutes the
first time).

    .venv/bin/python benchmarks/validate_throughput.py [--images 10000]
"""

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "benchmarks" / ".cache"


def experiment(n: int) -> dict:
    """The default experiment's factors, with one big training split and no probes."""
    import yaml

    exp = yaml.safe_load((ROOT / "params.yaml").read_text())
    exp.update(name="validate-bench", splits={"train": n, "val": 10, "test": 10},
               sweeps=[], conflicts=[])
    exp.pop("background_protocol", None)
    return exp


def dataset(n: int) -> dict[str, Path]:
    import yaml

    from cuelab.render import render
    from cuelab.sampling import sample
    from cuelab.sensor import sensor

    root = CACHE / f"validate-{n}"
    paths = {"params": root / "params.yaml", "scenes": root / "scenes.parquet",
             "renders": root / "renders", "images": root / "images"}
    exp = experiment(n)
    root.mkdir(parents=True, exist_ok=True)
    if not paths["params"].exists() or yaml.safe_load(paths["params"].read_text()) != exp:
        paths["params"].write_text(yaml.safe_dump(exp, sort_keys=False))
    if not (paths["images"] / "index.parquet").exists():
        print(f"rendering the {n + 20}-image benchmark dataset once (kept in {root})...")
        sample(paths["params"], paths["scenes"])
        print(render(paths["params"], paths["scenes"], paths["renders"]))
        print(sensor(paths["params"], paths["scenes"], paths["renders"], paths["images"]))
    return paths


def timed(fn, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=10_000)
    args = ap.parse_args()
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

    from cuelab.data import load_split, read_index
    from cuelab.validate import image_stats, validate

    paths = dataset(args.images)
    root = paths["images"]
    shards = sorted(read_index(root).query("split == 'train'").shard.unique())
    files = [root / f"{s}.{kind}.npy" for s in shards for kind in ("images", "masks")]

    raw = timed(lambda: [f.read_bytes() for f in files])
    loaded = timed(lambda: load_split(root, "train"))
    mapped = timed(lambda: np.asarray(load_split(root, "train", mmap=True).images).sum())
    size = sum(f.stat().st_size for f in files) / 2**20
    print(f"read {args.images} images ({size:.0f} MB in {len(shards)} shards):")
    print(f"  raw bytes   {raw:6.2f} s")
    print(f"  load_split  {loaded:6.2f} s  ({loaded / raw:.2f}x raw; target < 2 s: "
          f"{'ok' if loaded < 2 else 'MISSED'})")
    print(f"  mmap+touch  {mapped:6.2f} s  ({mapped / raw:.2f}x raw)")

    stats = timed(lambda: image_stats(root, progress=False), repeat=1)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        result = validate(paths["params"], paths["scenes"], root, Path(tmp) / "docs",
                          Path(tmp) / "validation.json", progress=False)
        whole = time.perf_counter() - start
    n = result.images
    print(f"validate {n} images, {result.expectations} expectations "
          f"({'passed' if result.passed else 'FAILED'}):")
    print(f"  image statistics alone  {stats:6.2f} s")
    print(f"  cuelab validate         {whole:6.2f} s  ({whole / stats:.1f}x the statistics pass; "
          f"{n / whole:.0f} images/s; target < 30 s: {'ok' if whole < 30 else 'MISSED'})")


if __name__ == "__main__":
    main()
