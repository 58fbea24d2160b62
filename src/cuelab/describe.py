"""A readable summary of an experiment (`cuelab params check`)."""

from __future__ import annotations

from .config import Experiment
from .factors import REGISTRY


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
    return "\n".join(lines)


def _fmt(v) -> str:
    if isinstance(v, tuple):
        return f"[{v[0]:g}, {v[1]:g}]"
    return v if isinstance(v, str) else f"{v:g}"
