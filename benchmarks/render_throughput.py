"""Render throughput against the bare Cycles floor, measured in the same run.

  floor   a minimal bpy script: one object, a sun, a camera, a world colour, the same Cycles
          settings; per image it turns the object and calls bpy.ops.render.render(write_still)
  step    `cuelab render` on rows of the default experiment (every factor applied, RGB and the
          exact mask read back, chunks written): one worker on every core against the floor on
          every core; then one and two workers of one Cycles thread each, the process scaling
  memory  one studio rendering 5,000 rows: resident memory after 100 rows and at the end

Both sides are timed end to end (interpreter start, scene build, N renders). Targets on 2 cores
at 64x64: step/floor >= 0.85; 2 workers >= 1.7x one; memory growth < 100 MB.

Why one thread per worker for the scaling: a worker given every core already keeps them busy
(Cycles renders with a thread per core), so a second worker could only share the same cores. On
a 64x64 image part of each render is serial, so `cuelab render` gives each of N workers
cores/N threads, and N one-thread workers beat one worker of N threads; both are printed.

    .venv/bin/python benchmarks/render_throughput.py [--images 512] [--memory-rows 5000]
"""

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

FLOOR = textwrap.dedent("""
    import math, sys, bpy
    n, res, samples, out = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    threads = int(sys.argv[5])
    bpy.ops.wm.read_factory_settings(use_empty=True)
    sc = bpy.context.scene
    sc.render.threads_mode = "FIXED"
    sc.render.threads = threads
    sc.render.engine = "CYCLES"
    sc.cycles.samples = samples
    sc.cycles.use_adaptive_sampling = False
    sc.cycles.use_denoising = False
    sc.cycles.max_bounces = 4
    sc.render.resolution_x = sc.render.resolution_y = res
    sc.render.use_persistent_data = True
    sc.render.image_settings.file_format = "PNG"
    bpy.ops.mesh.primitive_cube_add()
    obj = bpy.context.active_object
    cam = bpy.data.objects.new("cam", bpy.data.cameras.new("cam"))
    sc.collection.objects.link(cam)
    sc.camera = cam
    cam.location = (0, -4.6, 1.6)
    cam.rotation_euler = (math.radians(71), 0, 0)
    sun = bpy.data.objects.new("sun", bpy.data.lights.new("sun", "SUN"))
    sc.collection.objects.link(sun)
    sc.world = bpy.data.worlds.new("w")
    sc.world.node_tree.nodes["Background"].inputs["Color"].default_value = (.18, .18, .18, 1)
    for i in range(n):
        obj.rotation_euler = (0, 0, i * 0.1)
        sc.render.filepath = f"{out}/{i % 8}.png"
        bpy.ops.render.render(write_still=True)
""")

MEMORY = textwrap.dedent("""
    import sys
    from cuelab.config import load_experiment
    from cuelab.render import _records, plan_chunks
    from cuelab.render.studio import Studio
    from cuelab.sampling import sample_scenes
    n = int(sys.argv[1])
    exp = load_experiment(sys.argv[2])
    rows = _records(plan_chunks(sample_scenes(exp), 10**9)[0])
    studio = Studio(exp.render)
    def rss_mb():
        for line in open("/proc/self/status"):
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    for i in range(n):
        studio.render_row(rows[i % len(rows)])
        if i == 99:
            start = rss_mb()
    print(f"RSS {start:.1f} {rss_mb():.1f}", file=sys.stderr)
""")


def wall(cmd, **kw) -> tuple[float, str]:
    t = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode:
        sys.exit(f"{cmd[:3]} failed:\n{r.stderr[-3000:]}")
    return time.perf_counter() - t, r.stderr


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=512)  # 8 chunks of 64
    ap.add_argument("--memory-rows", type=int, default=5000)
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    from cuelab.config import load_experiment
    from cuelab.render import render
    from cuelab.sampling import sample_scenes

    exp = load_experiment(ROOT / "params.yaml")
    res, samples = exp.render.resolution, exp.render.samples
    scenes = sample_scenes(exp).drop_duplicates("render_id").head(args.images)
    n = len(scenes)
    cores = len(os.sched_getaffinity(0))

    def floor(tmp, threads):
        return wall([sys.executable, "-c", FLOOR, str(n), str(res), str(samples), tmp,
                     str(threads)])[0]

    def step(tmp, workers, threads):
        t = time.perf_counter()
        render(exp, scenes, f"{tmp}/{workers}x{threads}", workers=workers, threads=threads,
               progress=False)
        return time.perf_counter() - t

    with tempfile.TemporaryDirectory() as tmp:
        floor_all, one_all = floor(tmp, cores), step(tmp, 1, cores)
        floor_1, one_1, two_1 = floor(tmp, 1), step(tmp, 1, 1), step(tmp, 2, 1)
    print(f"{n} images at {res}x{res}, {samples} samples, Cycles on the CPU, {cores} cores")
    print(f"  bare Cycles floor, {cores} threads       {n / floor_all:6.1f} images/s")
    print(f"  cuelab, 1 worker of {cores} threads      {n / one_all:6.1f} images/s   "
          f"ratio to floor {floor_all / one_all:.2f}  (target >= 0.85)")
    print(f"  bare Cycles floor, 1 thread        {n / floor_1:6.1f} images/s")
    print(f"  cuelab, 1 worker of 1 thread       {n / one_1:6.1f} images/s   "
          f"ratio to floor {floor_1 / one_1:.2f}")
    print(f"  cuelab, 2 workers of 1 thread      {n / two_1:6.1f} images/s   "
          f"speed-up over 1 worker of 1 thread {one_1 / two_1:.2f}  (target >= 1.7), "
          f"over 1 worker of {cores} threads {one_all / two_1:.2f}")
    if args.memory_rows:
        _, err = wall([sys.executable, "-c", MEMORY, str(args.memory_rows),
                       str(ROOT / "params.yaml")])
        start, end = (float(x) for x in err.strip().splitlines()[-1].split()[1:])
        print(f"  memory over {args.memory_rows} renders in one studio: {start:.0f} MB after 100,"
              f" {end:.0f} MB at the end, growth {end - start:.1f} MB  (target < 100 MB)")


if __name__ == "__main__":
    main()
