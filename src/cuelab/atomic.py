"""Writing so that a reader never sees half a file or half a folder: write under a temporary
name beside the target, then rename (atomic within one filesystem). Every step writes this way,
so a killed step leaves the old output or the new one, never a mix."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path


def npz_bytes(arrays: dict, compress: bool = False) -> bytes:
    """An .npz (as numpy.savez writes it) without timestamps, so the same arrays give the same
    bytes: numpy stamps each member with the time of writing."""
    import io
    import zipfile

    import numpy as np

    buf = io.BytesIO()
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(buf, "w", method) as zf:
        for name, arr in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = method
            with zf.open(info, "w") as f:
                np.lib.format.write_array(f, np.ascontiguousarray(arr), allow_pickle=False)
    return buf.getvalue()


def alive(pid: int) -> bool:
    """Is there a process of this id (on this machine)?"""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's: alive
        return True
    return True


def remove_stale(folder: str | Path, stem: str) -> list[Path]:
    """Remove what killed processes left in `folder`: entries named `stem` + a process id +
    '.' or '-' + anything, whose process is gone (every temporary name here carries its
    writer's id). Entries of a live process are left alone. Returns what was removed."""
    folder, removed = Path(folder), []
    pattern = re.compile(re.escape(stem) + r"(\d+)(?:[.-].*)?")
    if not folder.is_dir():
        return removed
    for entry in folder.iterdir():
        m = pattern.fullmatch(entry.name)
        if m and int(m.group(1)) != os.getpid() and not alive(int(m.group(1))):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


def write_bytes(path: str | Path, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(path.parent, f".{path.name}.")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_text(path: str | Path, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, data, indent: int = 2) -> Path:
    """JSON, numpy scalars included (they come out of every statistic)."""
    return write_text(path, json.dumps(data, indent=indent, default=_plain) + "\n")


def _plain(x):
    if hasattr(x, "item") and getattr(x, "shape", None) == ():  # a numpy scalar
        return x.item()
    raise TypeError(f"{type(x).__name__} is not JSON serialisable")


def temp_dir_beside(out: str | Path) -> Path:
    """An empty folder next to `out`, to build its replacement in (named with this process's
    id: what a killed run left is removed here, the next time)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for stem in (f".{out.name}.", f".{out.name}.old-"):
        remove_stale(out.parent, stem)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.{os.getpid()}.", dir=out.parent)).resolve()
    tmp.chmod(0o755)  # mkdtemp's 0700 would hide the results from other users
    return tmp


def swap_in(tmp: Path, out: str | Path) -> Path:
    """Put the finished folder `tmp` in the place of `out` (the old one, if any, is removed)."""
    out = Path(out)
    old = out.with_name(f".{out.name}.old-{os.getpid()}")
    if out.exists():
        out.rename(old)
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)
    return out


@contextlib.contextmanager
def replaced_dir(out: str | Path):
    """`with replaced_dir(out) as tmp:` build the new folder in `tmp`; it replaces `out` when
    the block succeeds and is removed when it fails."""
    tmp = temp_dir_beside(out)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    swap_in(tmp, out)
