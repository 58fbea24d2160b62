"""The probe kinds: the ways cuelab varies factors to see what the model's decisions depend on.

Each kind lives in one module (`sweep`, `conflict`, `protocol`) that declares, in a `ProbeKind`:
its result model (a part of results.json), its statistics, the evidence it gives the reliance
ranking and the robustness table, its headline metrics and plot data, and its part of the page.
The evaluation, the metrics, the ranking and the pages iterate over `PROBE_KINDS`, in this
order. A new kind is a new module and one entry here.

>>> from cuelab.probes import PROBE_KINDS
>>> list(PROBE_KINDS)
['sweep', 'conflict', 'protocol']
"""

from __future__ import annotations

from . import conflict, protocol, sweep
from .base import Evidence, ProbeKind, ProbeRef
from .estimate import Bootstrap, Estimate

PROBE_KINDS: dict[str, ProbeKind] = {k.name: k for k in (sweep.KIND, conflict.KIND, protocol.KIND)}

__all__ = ["PROBE_KINDS", "ProbeKind", "ProbeRef", "Evidence", "Estimate", "Bootstrap"]
