"""How many cores this process may use: the CPUs it may run on, capped by its container's CPU
limit. A Kubernetes pod limited to 4 CPUs on a 64-core node sees 64 CPUs, and Cycles and torch
would start 64 threads that the kernel lets run 4 CPUs' worth of time: they stall each other.
The limit is cgroup v2's cpu.max (in the process's own cgroup, or the root of a container's
namespace) or cgroup v1's CFS quota; a fraction rounds up (1.5 CPUs: 2 threads)."""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP = Path("/sys/fs/cgroup")          # where the kernel shows the cgroups
MEMBERSHIP = Path("/proc/self/cgroup")    # which of them this process is in


def usable_cores() -> int:
    cores = len(os.sched_getaffinity(0))
    limit = cpu_limit()
    return cores if limit is None else max(1, min(cores, math.ceil(limit)))


def cpu_limit() -> float | None:
    """The CPUs' worth of time the container may use, or None when unlimited (or unknown)."""
    cgroup = CGROUP
    v2 = [cgroup / "cpu.max"]
    try:  # "0::/kubepods/.../<container>": the process's own cgroup (v2)
        own = [line.split("::", 1)[1] for line in MEMBERSHIP.read_text().splitlines()
               if line.startswith("0::")]
        v2 = [cgroup / p.lstrip("/") / "cpu.max" for p in own if p.strip("/")] + v2
    except OSError:
        pass
    for path in v2:  # "max 100000" (none) or "400000 100000" (4 CPUs)
        if (fields := _read(path)) and len(fields) == 2:
            return None if fields[0] == "max" else _ratio(fields[0], fields[1])
    quota, period = _read(cgroup / "cpu" / "cpu.cfs_quota_us"), \
        _read(cgroup / "cpu" / "cpu.cfs_period_us")
    return _ratio(quota[0], period[0]) if quota and period else None


def cap_torch_threads() -> int:
    """Torch's CPU threads, at most the usable cores (never raised: torch's default counts
    physical cores, and another count would change a CPU model's bits). Returns the count."""
    import torch

    threads = min(torch.get_num_threads(), usable_cores())
    if threads != torch.get_num_threads():
        torch.set_num_threads(threads)
    return threads


def _read(path: Path) -> list[str]:
    try:
        return path.read_text().split()
    except OSError:
        return []


def _ratio(quota: str, period: str) -> float | None:
    try:
        q, p = int(quota), int(period)
    except ValueError:
        return None
    return q / p if q > 0 and p > 0 else None  # v1's quota -1: no limit
