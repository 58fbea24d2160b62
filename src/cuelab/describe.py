"""A readable summary of an experiment (`cuelab params check`)."""

from __future__ import annotations

from .config import DEFAULT_MAX_IMAGES, Experiment
from .factors import REGISTRY

# How long the data and the models take, for an "about" only: rates measured on 2 CPU cores (the
# machines this project runs on), at 64x64 and 4 samples, scaled by pixels (and samples, width).
# render: `cuelab render`, 2 workers of 1 Cycles thread, 256 renders end to end (start-up
#   included): 65 renders/s (benchmarks/render_throughput.py --images 256 --repeats 1, row
#   "cuelab, 2 workers of 1 thread", on a shared 2-core machine at load ~4; steady 119/s)
RENDERS_PER_S = 65.0
# sensor: `cuelab sensor` on the default experiment's 5,780 images: 5,361 images/s
SENSOR_IMAGES_PER_S = 5000.0
# train: the default run's simple_cnn (width 24), `make run`: 202.5 s for 3 replicates of 1,200
#   images x 15 epochs, validation included: about 3.75 ms per image and epoch
TRAIN_S_PER_IMAGE_EPOCH = 67.5 / (1200 * 15)
# the other steps (params, sample, validate, evaluate, report), each timed on the default
#   experiment with its renders and models cached: about 45 s, and 11 s more per model evaluated
#   (its predictions on 4,280 probe images, its attribution maps); not scaled
OTHER_STEPS_S, OTHER_STEPS_S_PER_MODEL = 45.0, 11.0
# a study: what each variant costs beyond its steps' own times. The shipped dose-response
#   study's variants took ~100 s outside rendering and training, the steps ~60 s
#   (benchmarks/study.py). Of the ~40 s, the queue itself is ~12 s (an evaluation-only variant:
#   65.5 s queued against 53.4 s run in the workspace); the rest is not accounted for
QUEUE_S_PER_VARIANT = 40.0
MEASURED_AT = {"resolution": 64, "samples": 4, "width": 24}
# Beyond this many images `params check` does not sample the table to count the renders
COUNT_RENDERS_UP_TO = DEFAULT_MAX_IMAGES


def describe_experiment(exp: Experiment, source: str = "") -> str:
    counts = exp.row_counts()
    lines = [f"{source}: valid experiment '{exp.name}' (seed {exp.seed})" if source
             else f"experiment '{exp.name}' (seed {exp.seed})"]
    lines.append(f"  classes ({exp.label.factor}): " + ", ".join(exp.classes))
    lines.append("  factors varied:")
    for name, spec in exp.factors.items():
        f = REGISTRY[name]
        if spec.levels is not None:
            dist = "levels " + ", ".join(map(str, spec.levels))
        else:
            lo, hi = spec.range
            dist = f"{spec.distribution} {lo:g} to {hi:g} {f.unit}".rstrip()
        corr = ""
        if spec.correlation is not None:
            pairs = ", ".join(f"{c}->{_fmt(p)}" for c, p in zip(exp.classes, exp.pairs(name)))
            corr = f"; correlated with the label, rho {spec.correlation.rho:g} ({pairs})"
        lines.append(f"    {name:<18} {f.stage:<6} {dist}{corr}")
    fixed = [n for n in REGISTRY if n not in exp.factors and n != exp.label.factor]
    lines.append(f"  held at their defaults: {len(fixed)} factors (`cuelab factors` lists them)")
    s = exp.splits
    lines.append(f"  splits: train {s.train}, val {s.val}, test {s.test}")
    for sw in exp.sweeps:
        levels = exp.sweep_levels(sw)
        lines.append(f"  sweep {sw.factor}: {len(levels)} levels x {sw.base_scenes} base scenes"
                     f" ({', '.join(_fmt(v) for v in levels)})")
    for c in exp.conflicts:
        lines.append(f"  conflict {c.factors[0]} vs {c.factors[1]}: {c.images} images")
    if exp.background_protocol:
        bp = exp.background_protocol
        lines.append(f"  background protocol: {', '.join(bp.variants)} x {bp.base_scenes} "
                     "base scenes")
    lines.append(f"  images in the scenes table: {sum(counts.values())} ("
                 + ", ".join(f"{k} {v}" for k, v in counts.items() if v) + ")")
    r = exp.render
    lines.append(f"  render: {r.engine} {r.resolution}x{r.resolution}, {r.samples} samples, "
                 f"device {r.device}")
    images = sum(counts.values())
    renders = distinct_renders(exp) if images <= COUNT_RENDERS_UP_TO else None
    if renders is not None:
        lines.append(f"  renders: {renders} distinct (rows that differ only in sensor factors "
                     "share one)")
    else:
        lines.append(f"  renders: at most {images} (not counted: the table has more than "
                     f"{COUNT_RENDERS_UP_TO} images)")
    lines.append("  " + estimate_text(exp, renders if renders is not None else images, images))
    return "\n".join(lines)


def distinct_renders(exp: Experiment) -> int:
    """The scenes the render step draws: the table's distinct render ids."""
    from .sampling import sample_scenes  # pandas: only when asked

    return int(sample_scenes(exp)["render_id"].nunique())


def estimate_seconds(exp: Experiment, renders: int, images: int) -> dict[str, float | None]:
    """Render, sensor, train and the other steps' time on 2 CPU cores, from the measured rates
    above (train: None for an architecture not measured)."""
    pixels = (exp.render.resolution / MEASURED_AT["resolution"]) ** 2
    t = exp.train
    train = None
    if t.model == "simple_cnn":  # early stopping may end it sooner: at most this
        train = (exp.splits.train * t.epochs * t.replicates * TRAIN_S_PER_IMAGE_EPOCH * pixels
                 * (t.width / MEASURED_AT["width"]) ** 2)
    return {"render": renders / RENDERS_PER_S * pixels * exp.render.samples
            / MEASURED_AT["samples"],
            "sensor": images / SENSOR_IMAGES_PER_S * pixels,
            "train": train,
            "the other steps": OTHER_STEPS_S + OTHER_STEPS_S_PER_MODEL * t.replicates}


def estimate_text(exp: Experiment, renders: int, images: int) -> str:
    parts = estimate_seconds(exp, renders, images)
    total = sum(v for v in parts.values() if v is not None)
    each = ", ".join(f"{k} {_duration(v)}" if v is not None else
                     f"{k} not estimated for {exp.train.model}" for k, v in parts.items())
    return (f"estimated time: about {_duration(total)} on 2 CPU cores ({each}); an estimate "
            "from rates measured by benchmarks/render_throughput.py, `cuelab sensor` and the "
            "default run's steps, scaled by resolution^2 x samples")


def _duration(seconds: float) -> str:
    if seconds < 1:
        return "under 1 s"
    if seconds < 90:
        return f"{round(seconds)} s"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.0f} days"


def _fmt(v) -> str:
    if isinstance(v, tuple):
        return f"[{v[0]:g}, {v[1]:g}]"
    return v if isinstance(v, str) else f"{v:g}"
