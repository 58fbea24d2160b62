"""The cores a step may use: the CPUs it may run on, capped by its container's CPU limit, read
from cgroup files laid out as the kernel shows them (v2 and v1)."""

import os
import subprocess
import sys

import pytest

from cuelab import cores

AFFINITY = len(os.sched_getaffinity(0))


@pytest.fixture
def cgroup(tmp_path, monkeypatch):
    """An empty cgroup tree and a membership file: fill in what a case needs."""
    monkeypatch.setattr(cores, "CGROUP", tmp_path / "sys")
    monkeypatch.setattr(cores, "MEMBERSHIP", tmp_path / "membership")
    (tmp_path / "sys").mkdir()
    return tmp_path


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.mark.parametrize("cpu_max, limit, usable", [
    ("400000 100000\n", 4.0, min(AFFINITY, 4)),
    ("150000 100000\n", 1.5, min(AFFINITY, 2)),  # a fraction of a CPU rounds up
    ("max 100000\n", None, AFFINITY)])
def test_a_v2_limit_is_read_from_the_process_s_own_cgroup(cgroup, cpu_max, limit, usable):
    _write(cgroup / "membership", "0::/kubepods/pod-1/container-2\n")
    _write(cgroup / "sys" / "kubepods/pod-1/container-2/cpu.max", cpu_max)
    _write(cgroup / "sys" / "cpu.max", "max 100000\n")  # the node's root: unlimited
    assert cores.cpu_limit() == limit and cores.usable_cores() == usable


def test_a_container_s_namespace_shows_its_limit_at_the_root(cgroup):
    _write(cgroup / "membership", "0::/\n")
    _write(cgroup / "sys" / "cpu.max", "50000 100000\n")
    assert cores.cpu_limit() == 0.5 and cores.usable_cores() == 1  # half a CPU: one thread


@pytest.mark.parametrize("quota, limit, usable", [("-1", None, AFFINITY), ("50000", 0.5, 1),
                                                  ("800000", 8.0, min(AFFINITY, 8))])
def test_a_v1_cfs_quota(cgroup, quota, limit, usable):
    _write(cgroup / "membership", "4:cpu,cpuacct:/\n")
    _write(cgroup / "sys" / "cpu" / "cpu.cfs_quota_us", quota + "\n")
    _write(cgroup / "sys" / "cpu" / "cpu.cfs_period_us", "100000\n")
    assert cores.cpu_limit() == limit and cores.usable_cores() == usable


def test_no_cgroup_files_means_the_cpus_it_may_run_on(cgroup):
    assert cores.cpu_limit() is None and cores.usable_cores() == AFFINITY


def test_torch_threads_are_capped_by_the_limit_and_never_raised(tmp_path):
    """In a fresh interpreter (torch's thread count is per process): a limit of half a CPU gives
    torch 1 thread; a limit above the CPUs leaves torch's own count."""
    program = (
        "import sys, pathlib, torch\n"
        "from cuelab import cores\n"
        "cores.CGROUP, cores.MEMBERSHIP = pathlib.Path(sys.argv[1]), pathlib.Path('/nonexistent')\n"
        "before = torch.get_num_threads()\n"
        "print(before, cores.cap_torch_threads(), torch.get_num_threads())\n")
    for quota, expected in (("50000", 1), ("6400000", None)):
        folder = tmp_path / quota
        _write(folder / "cpu.max", f"{quota} 100000\n")
        out = subprocess.run([sys.executable, "-c", program, str(folder)], capture_output=True,
                             text=True, check=True).stdout.split()
        before, capped, after = map(int, out)
        assert capped == after == (expected or before), out
