"""How long `cuelab sample` takes on the default experiment (target: under 5 s), and how much of
it is more than the unavoidable start-up (a Python that imports the same modules and exits),
measured in the same run: machines here are noisy, so the ratio is the figure to compare.

    .venv/bin/python benchmarks/sample_speed.py [--params params.yaml] [--repeat 5]
"""

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def timed(cmd: list) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        step = [BIN / "cuelab", "sample", "--params", args.params, "--out", f"{tmp}/s.parquet"]
        floor = [sys.executable, "-c", "import cuelab.cli, cuelab.config, cuelab.sampling, "
                 "pyarrow.parquet"]
        runs = [(timed(step), timed(floor)) for _ in range(args.repeat)]
    step_s = statistics.median(r[0] for r in runs)
    floor_s = statistics.median(r[1] for r in runs)
    print(f"cuelab sample ({args.params}): {step_s:.2f} s (median of {args.repeat}; target < 5 s)")
    print(f"start-up floor (imports only): {floor_s:.2f} s")
    print(f"ratio sample / floor: {step_s / floor_s:.2f}")


if __name__ == "__main__":
    main()
