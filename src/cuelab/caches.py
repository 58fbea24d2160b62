"""Where cuelab's shared caches live: the render cache (`cuelab.render.cache`) and the model
cache (`cuelab.train.cache`). Both keep what one run made for every other run to take, in the DVC
project the run belongs to, never versioned.

Where: the cache's environment variable (a folder, or `off`), else .cuelab/<name> in the DVC
project (`DVC_ROOT`, which a queued or `--temp` DVC experiment points at the project it came
from, else the nearest folder above the output holding .dvc), else no cache.
"""

from __future__ import annotations

import os
from pathlib import Path

from .atomic import write_bytes

FOLDER = Path(".cuelab")


def cache_folder(out: str | Path, env: str, name: str) -> Path | None:
    """Where a step writing `out` keeps the cache `name` (None: no cache); see the module."""
    setting = os.environ.get(env, "").strip()
    if setting.lower() == "off":
        return None
    if setting:
        return Path(setting)
    if os.environ.get("DVC_ROOT"):
        return Path(os.environ["DVC_ROOT"]) / FOLDER / name
    for folder in Path(out).resolve().parents:
        if (folder / ".dvc").is_dir():
            return folder / FOLDER / name
    return None


def chosen_folder(out: str | Path, choice: str | Path | None, env: str, name: str
                  ) -> Path | None:
    """A step's `cache` argument: a folder, "off", or None for `cache_folder`'s default."""
    if choice is None:
        return cache_folder(out, env, name)
    return None if str(choice) == "off" else Path(choice)


def ignore_in_git(root: Path) -> None:
    """The cache's own .gitignore (in .cuelab/ for the default place, else in the cache): never
    committed, nor swept into a DVC experiment's commit."""
    ignore = root.parent / ".gitignore" if root.parent.name == FOLDER.name \
        else root / ".gitignore"
    if not ignore.exists():
        ignore.parent.mkdir(parents=True, exist_ok=True)
        write_bytes(ignore, b"# cuelab's shared caches: not versioned\n*\n")
