"""The factor registry: every property of an image that cuelab controls.

>>> from cuelab.factors import REGISTRY
>>> REGISTRY["color"].domain_text()
"""

from __future__ import annotations

from .base import Factor, Stage, Value
from .scene import PALETTE, SCENE_FACTORS
from .sensor import SENSOR_FACTORS

REGISTRY: dict[str, Factor] = {f.name: f for f in SCENE_FACTORS + SENSOR_FACTORS}
FACTOR_NAMES: tuple[str, ...] = tuple(REGISTRY)
SCENE_FACTOR_NAMES = tuple(f.name for f in SCENE_FACTORS)
SENSOR_FACTOR_NAMES = tuple(f.name for f in SENSOR_FACTORS)

assert len(REGISTRY) == len(SCENE_FACTORS) + len(SENSOR_FACTORS), "duplicate factor name"


def factors_table() -> str:
    """The registry as a plain-text table (`cuelab factors`)."""
    rows = [("factor", "acts on", "domain", "default", "what it does")]
    for f in REGISTRY.values():
        rows.append((f.name, f.stage, f.domain_text(), str(f.default), f.doc))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = []
    for i, r in enumerate(rows):
        lines.append("  ".join(c.ljust(w) for c, w in zip(r[:4], widths)) + "  " + r[4])
        if i == 0:
            lines.append("  ".join("-" * w for w in widths) + "  " + "-" * 12)
    return "\n".join(lines)


__all__ = ["Factor", "Stage", "Value", "REGISTRY", "FACTOR_NAMES", "SCENE_FACTOR_NAMES",
           "SENSOR_FACTOR_NAMES", "PALETTE", "factors_table"]
