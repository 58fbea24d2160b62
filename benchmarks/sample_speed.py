"""How long `cuelab sample` takes on the default experiment (target: under 5 s), and how much of
it is more than the unavoidable start-up (a Python that imports the same modules and exits),
measured in the same run: machines here are noisy, so the ratio is the figure to compare. Then
the same experiment with a training split of --rows rows (default 10^6; target: under 20 s),
timed once, with the time per million rows above the start-up floor.

    .venv/bin/python benchmarks/sample_speed.py [--params params.yaml] [--repeat 5]
                                                [--rows 1000000]
"""

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

BIN = Path(sys.executable).parent


def timed(cmd: list) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--rows", type=int, default=1_000_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        step = [BIN / "cuelab", "sample", "--params", args.params, "--out", f"{tmp}/s.parquet"]
        floor = [sys.executable, "-c", "import cuelab.cli, cuelab.config, cuelab.sampling, "
                 "pyarrow.parquet"]
        runs = [(timed(step), timed(floor)) for _ in range(args.repeat)]
        exp = yaml.safe_load(Path(args.params).read_text())
        exp["splits"]["train"] = args.rows
        exp["max_images"] = max(exp.get("max_images", 0), 2 * args.rows)
        big = Path(tmp) / "big.yaml"
        big.write_text(yaml.safe_dump(exp))
        big_s = timed([BIN / "cuelab", "sample", "--params", big, "--out", f"{tmp}/b.parquet"])
    step_s = statistics.median(r[0] for r in runs)
    floor_s = statistics.median(r[1] for r in runs)
    print(f"cuelab sample ({args.params}): {step_s:.2f} s (median of {args.repeat}; target < 5 s)")
    print(f"start-up floor (imports only): {floor_s:.2f} s")
    print(f"ratio sample / floor: {step_s / floor_s:.2f}")
    print(f"cuelab sample with {args.rows} training rows: {big_s:.1f} s (target < 20 s for "
          f"10^6); {(big_s - floor_s) / args.rows * 1e6:.1f} s per million rows above the floor")


if __name__ == "__main__":
    main()
