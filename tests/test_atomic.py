"""Writing atomically, and cleaning up after killed runs: what a dead process left beside an
output (its temporary folder, file, or the old output it was swapping out) goes at the next
write; what a live process is writing stays."""

import os
import subprocess
import sys

import pytest

from cuelab.atomic import remove_stale, replaced_dir, write_bytes


def dead_pid() -> int:
    """The id of a process that has exited (and been reaped)."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return int(done.stdout)


@pytest.mark.reliability(8)
def test_a_killed_runs_leftovers_go_and_a_live_runs_stay(tmp_path):
    dead = dead_pid()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        leftovers = [tmp_path / f".images.{dead}.k2j4", tmp_path / f".images.old-{dead}",
                     tmp_path / f".metrics.json.{dead}.tmp"]
        for path in leftovers[:2]:
            path.mkdir()
            (path / "shard.npy").write_bytes(b"x")
        leftovers[2].write_text("{")
        busy = tmp_path / f".images.{live.pid}.a8f1"
        busy.mkdir()
        others = [tmp_path / ".images.notapid", tmp_path / f".labels.{dead}.x"]
        for path in others:
            path.mkdir()
        with replaced_dir(tmp_path / "images") as tmp:
            (tmp / "index.parquet").write_bytes(b"data")
            assert tmp.name.startswith(f".images.{os.getpid()}.")
        write_bytes(tmp_path / "metrics.json", b"{}")
        assert not any(p.exists() for p in leftovers)
        assert busy.exists() and all(p.exists() for p in others)  # not ours to remove
        assert (tmp_path / "images" / "index.parquet").read_bytes() == b"data"
    finally:
        live.kill()
        live.wait()


@pytest.mark.reliability(8)
def test_render_scratch_of_a_killed_render_is_removed(tmp_path):
    dead = dead_pid()
    (tmp_path / f"cuelab-render-{dead}-abcd").mkdir()
    (tmp_path / f"cuelab-render-{dead}-abcd" / "rgba.png").write_bytes(b"x")
    mine = tmp_path / f"cuelab-render-{os.getpid()}-efgh"
    mine.mkdir()
    removed = remove_stale(tmp_path, "cuelab-render-")
    assert [p.name for p in removed] == [f"cuelab-render-{dead}-abcd"]
    assert mine.exists()
