"""Datasets versioned with DVC where there is no git checkout: on a cluster, in a pipeline run.

Locally, `dvc repro` records each dataset's hash in dvc.lock and `dvc push` uploads it. A Kubeflow
run has no repository, so the pipeline pushes the dataset itself: `dvc add --to-remote` streams the
directory to the remote and writes a `.dvc` file holding its hash (the same md5 `dvc.lock` would
record for it). Commit that file to a cuelab checkout and `dvc pull` fetches exactly that dataset.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from .atomic import write_text
from .errors import CuelabError


@dataclass
class PushedDataset:
    md5: str            # e.g. '9a96f739afbcc4ae31a08e6f1477574b.dir'
    remote: str
    files: int
    bytes: int
    dvc_file: Path      # the pointer to commit: `dvc pull <name>.dvc` gets the data back
    seconds: float

    def __str__(self) -> str:
        return (f"pushed {self.files} files ({self.bytes / 2**20:.1f} MB) to the DVC remote "
                f"{self.remote} as {self.md5} in {self.seconds:.1f} s; pointer: {self.dvc_file}")


def _dvc(*args: str, cwd: Path) -> str:
    dvc = Path(sys.executable).with_name("dvc")
    cmd = [str(dvc) if dvc.exists() else "dvc", *args]
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise CuelabError(f"`dvc {' '.join(args)}` failed: {done.stderr.strip() or done.stdout}")
    return done.stdout


def push_dataset(path: str | Path, remote: str, dvc_file: str | Path,
                 name: str = "images") -> PushedDataset:
    """Push the directory `path` to the DVC remote `remote` (a folder or any URL DVC supports)
    and write the `.dvc` pointer to `dvc_file`."""
    start = time.perf_counter()
    path = Path(path).resolve()
    if not path.is_dir():
        raise CuelabError(f"{path} is not a directory: nothing to push")
    if not remote:
        raise CuelabError("dvc_remote: got ''; give a DVC remote URL (a folder, s3://..., "
                          "gs://..., ...) to push the dataset to")
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        _dvc("init", "--no-scm", "-q", cwd=work)
        _dvc("remote", "add", "-d", "store", remote, cwd=work)
        _dvc("add", str(path), "--to-remote", "-o", name, "-q", cwd=work)
        text = (work / f"{name}.dvc").read_text()
    out = yaml.safe_load(text)["outs"][0]
    dvc_file = write_text(dvc_file, text)
    return PushedDataset(out["md5"], remote, int(out.get("nfiles", 1)), int(out["size"]),
                         dvc_file, time.perf_counter() - start)
