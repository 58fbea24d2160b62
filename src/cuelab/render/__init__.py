"""The render step: scenes table -> clean renders and exact object masks.

Each distinct `render_id` of the table is rendered once (rows that differ only in sensor factors
share it), and taken from the shared render cache (`cache.py`) where any earlier run rendered it. Renders are grouped in chunks (`render.chunk_size`) in table order; a chunk is one `.npz` (RGB,
mask, visible fraction) and one manifest, written under a temporary name and renamed, so a killed
run leaves only whole chunks and a rerun renders only the missing ones. `--shard I/N` takes chunks
I, I+N, I+2N, ...: shards are disjoint and their union is the whole set.

This module does not import bpy: the workers (separate processes) do, in `studio.py`. Nor, at
the top, pandas: a worker imports this module too, and starts half a second sooner without it.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import multiprocessing
import os
import signal
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..atomic import npz_bytes, remove_stale, write_bytes
from ..config import Experiment, RenderSettings, load_experiment
from ..cores import usable_cores
from ..errors import CuelabError
from ..factors import REGISTRY, SCENE_FACTOR_NAMES
from .cache import RenderCache, default_folder

if TYPE_CHECKING:
    import pandas as pd

ROW_FIELDS = list(SCENE_FACTOR_NAMES) + ["seed"]
SCRATCH = "cuelab-render-"  # + the process id: where Blender hands its passes over as files


# --- planning ----------------------------------------------------------------------------------

def plan_chunks(scenes: pd.DataFrame, chunk: int) -> list[pd.DataFrame]:
    """Distinct renders in table order, cut into chunks."""
    renders = scenes.drop_duplicates("render_id")[["render_id"] + ROW_FIELDS]
    return [renders.iloc[i: i + chunk] for i in range(0, len(renders), chunk)]


def parse_shard(text: str) -> tuple[int, int]:
    try:
        i, n = (int(x) for x in text.split("/"))
        assert n >= 1 and 0 <= i < n
    except (ValueError, AssertionError):
        raise CuelabError(f"--shard: got {text!r}; I/N with 0 <= I < N, e.g. 0/4") from None
    return i, n


# --- chunk files -------------------------------------------------------------------------------

def chunk_paths(out: Path, k: int) -> tuple[Path, Path]:
    return out / f"chunk-{k:05d}.npz", out / f"chunk-{k:05d}.json"


def _manifest(k: int, render_ids: list[str], settings: RenderSettings) -> dict:
    return {"chunk": k, "renders": len(render_ids), "render_ids": render_ids,
            "render_settings": settings.model_dump(), "renderer": renderer_fingerprint()}


# The code the pixels depend on, under src/cuelab: the studio and what it takes from the rest of
# cuelab (the sRGB conversions; the palette, which names the colours). The render settings it
# takes from cuelab.config are in the manifest on their own.
RENDERER_CODE = ("render/studio.py", "color.py", "factors/scene.py")


@functools.lru_cache(maxsize=2)
def renderer_fingerprint(root: Path = Path(__file__).parents[1]) -> str:
    """The renderer's code (in the package at `root`) and Blender's version: chunks made by
    another renderer are redone."""
    from importlib.metadata import version

    code = b"".join(name.encode() + b"\0" + (root / name).read_bytes() for name in RENDERER_CODE)
    return f"bpy {version('bpy')}, studio {hashlib.sha256(code).hexdigest()[:16]}"


def chunk_is_done(out: Path, k: int, rows: pd.DataFrame, settings: RenderSettings) -> bool:
    data, meta = chunk_paths(out, k)
    if not (data.is_file() and meta.is_file()):
        return False
    try:
        written = json.loads(meta.read_text())
    except (OSError, ValueError):
        return False
    expected = _manifest(k, rows.render_id.tolist(), settings)
    return (all(written.get(key) == value for key, value in expected.items())
            and written.get("sha256") == _sha256(data))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_renders(out: str | Path) -> dict[str, np.ndarray]:
    """Every chunk of a render directory: render_id, rgb, mask, visible_fraction. Each chunk is
    checked at the door (`read_chunk`)."""
    files = sorted(Path(out).glob("chunk-*.npz"))
    if not files:
        raise CuelabError(f"no renders in {out}: run `cuelab render` first")
    parts = [read_chunk(f) for f in files]
    sizes = {p["rgb"].shape[1:3] for p in parts}
    if len(sizes) > 1:
        first = {p["rgb"].shape[1:3]: f for f, p in zip(files, parts)}
        raise CuelabError(f"{out}: chunks of different resolutions ("
                          + ", ".join(f"{f.name} {h}x{w} px" for (h, w), f in first.items())
                          + f"): render them again (`cuelab render --out {out}`)")
    return {key: np.concatenate([p[key] for p in parts]) for key in CHUNK_ARRAYS}


# What a chunk holds: each array's element kind and its dimensions (n renders each).
CHUNK_ARRAYS = {"render_id": ("U", 1), "rgb": ("u1", 4), "mask": ("b1", 3),
                "visible_fraction": ("f", 1)}


def read_chunk(path: Path) -> dict[str, np.ndarray]:
    """One chunk, read whole: a truncated or foreign file, missing arrays, or arrays of another
    kind or shape are a `CuelabError` naming the file (`cuelab render` redoes such a chunk)."""
    from ..inputs import read_npz

    again = "run `cuelab render` again (it redoes the chunks that are not whole)"
    arrays = read_npz(path, "a render chunk", again)
    missing = [key for key in CHUNK_ARRAYS if key not in arrays]
    if missing:
        raise CuelabError(f"{path}: not a render chunk: no {', '.join(missing)} (it holds "
                          f"{', '.join(arrays) or 'no arrays'}); {again}")
    n = len(arrays["render_id"])
    for key, (kind, ndim) in CHUNK_ARRAYS.items():
        a = arrays[key]
        ok = a.dtype.kind == kind if len(kind) == 1 else a.dtype == np.dtype(kind)
        if not ok or a.ndim != ndim or len(a) != n or (key == "rgb" and a.shape[-1] != 3) \
                or (key == "mask" and a.shape != arrays["rgb"].shape[:3]):
            raise CuelabError(f"{path}: not a render chunk of {n} renders: {key} is {a.dtype} "
                              f"{a.shape}; {again}")
    return arrays


# --- workers (separate processes; each builds its studio once) ------------------------------------

_studio = None
_studio_args: tuple = ()


def _init_worker(settings_json: str, meshes: list[str], images: list[str], scratch: str,
                 threads: int, started) -> None:
    global _studio_args
    # Ctrl-C reaches every process of the terminal's group. The parent stops (and kills) the
    # workers itself; a KeyboardInterrupt here would land inside Blender's own Python (its
    # render engine's callbacks), which prints a traceback of its own before anyone can catch it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Each worker on its own cores: Blender's helper threads spin while they wait, and would
    # take turns from the worker next door (2 workers of 1 thread: 1.6x one worker, pinned 1.9x)
    with started.get_lock():
        index, started.value = started.value, started.value + 1
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) > threads:
        first = index * threads % len(cores)
        os.sched_setaffinity(0, (cores + cores)[first: first + threads])
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)  # Blender prints a line per file it writes
    _studio_args = (settings_json, meshes, images, scratch, threads)


def _get_studio():
    """Built on the first chunk, not in the pool initializer: an error there would make the
    pool restart workers forever instead of reporting it."""
    global _studio
    if _studio is None:
        from .studio import Studio  # bpy: only in workers

        settings_json, meshes, images, scratch, threads = _studio_args
        _studio = Studio(RenderSettings.model_validate_json(settings_json), meshes, images,
                         scratch, threads)
    return _studio


def _render_chunk(job: tuple, taken: list | None = None) -> tuple[int, int, int]:
    """One chunk: each render from the shared cache if there (`taken`: read from it already),
    else from the studio (and then into the cache). Returns the chunk, how many were rendered
    and how many taken."""
    k, records, out, settings_json, cache_folder, renderer = job
    settings = RenderSettings.model_validate_json(settings_json)
    cache = RenderCache(cache_folder, settings, renderer) if cache_folder else None
    renders, devices, rendered = [], set(), 0
    for i, row in enumerate(records):
        hit = taken[i] if taken else cache.get(row["render_id"]) if cache is not None else None
        if hit is None:
            studio = _get_studio()
            rgb, mask, frac = studio.render_row(row)
            hit = {"rgb": rgb, "mask": mask, "visible_fraction": np.float32(frac)}, studio.device
            if cache is not None:
                cache.put(row["render_id"], *hit)
            rendered += 1
        renders.append(hit[0])
        devices.add(hit[1])
    render_ids = [row["render_id"] for row in records]
    data, meta = chunk_paths(Path(out), k)
    payload = npz_bytes({"render_id": np.array(render_ids, dtype="U16"),
                          "rgb": np.stack([r["rgb"] for r in renders]),
                          "mask": np.stack([r["mask"] for r in renders]),
                          "visible_fraction": np.asarray([r["visible_fraction"] for r in renders],
                                                         np.float32)})
    write_bytes(data, payload)
    manifest = _manifest(k, render_ids, settings)
    manifest.update(device=", ".join(sorted(devices)), sha256=hashlib.sha256(payload).hexdigest())
    write_bytes(meta, json.dumps(manifest, indent=1).encode())  # last: marks the chunk done
    return k, rendered, len(records) - rendered


# --- the step ----------------------------------------------------------------------------------

@dataclass
class RenderSummary:
    out: Path
    rendered: int   # by Blender, in this run
    cached: int     # taken from the shared render cache
    reused: int     # in chunks an earlier run left whole in `out`
    chunks: int
    seconds: float
    workers: int
    threads: int
    cache: Path | None

    def __str__(self) -> str:
        rate = self.rendered / self.seconds if self.seconds and self.rendered else 0
        cache = (f"{self.cached} taken from the shared render cache ({self.cache})"
                 if self.cache else "no shared render cache")
        return (f"rendered {self.rendered} images ({rate:.0f}/s on {self.workers} worker"
                f"{'s' if self.workers > 1 else ''} x {self.threads} thread"
                f"{'s' if self.threads > 1 else ''}), {cache}, reused {self.reused} from an "
                f"earlier run; {self.chunks} chunks in {self.out} ({self.seconds:.1f} s)")


def render(params: str | Path | Experiment, scenes: str | Path | pd.DataFrame, out: str | Path,
           workers: int = 1, shard: str = "0/1", progress: bool = True,
           threads: int | None = None, cache: str | Path | None = None) -> RenderSummary:
    """The `render` step: every distinct scene of the table -> RGB + exact mask, in chunks.
    `threads`: Cycles' CPU threads per worker; by default the cores shared out among them.
    `cache`: the shared render cache's folder, or "off"; by default `cache.default_folder`'s."""
    import pandas as pd

    from ..scenes import check_values, read_scenes

    start = time.perf_counter()
    exp = params if isinstance(params, Experiment) else load_experiment(params)
    table = scenes if isinstance(scenes, pd.DataFrame) else read_scenes(scenes)
    # every scene value renderable, and the rest acquirable: fail before any rendering starts
    check_values(table, [n for n, f in REGISTRY.items() if f.stage == "scene" or n in table],
                 "rendered")
    index, count = parse_shard(shard)
    if workers < 1:
        raise CuelabError(f"--workers: got {workers}; at least 1")
    if threads is not None and threads < 1:
        raise CuelabError(f"--threads: got {threads}; at least 1")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    folder = default_folder(out, cache)
    with _owning(out, whole=count == 1):
        return _render_into(out, exp, table, index, count, workers, threads, progress, start,
                            folder)


@contextlib.contextmanager
def _owning(out: Path, whole: bool):
    """Hold the render folder while writing it: a whole run alone (it removes chunks of older
    tables), shards of one table together. Another run is refused at once, not interleaved."""
    import fcntl

    fd = os.open(out, os.O_RDONLY)  # a lock on the folder itself: no file left behind
    try:
        try:
            fcntl.flock(fd, (fcntl.LOCK_EX if whole else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CuelabError(f"{out}: another render is writing this folder; wait for it to "
                              "finish, or render into another --out") from None
        yield
    finally:
        os.close(fd)  # releases the lock


def _render_into(out: Path, exp: Experiment, table, index: int, count: int, workers: int,
                 threads: int | None, progress: bool, start: float,
                 folder: Path | None) -> RenderSummary:
    chunks = plan_chunks(table, exp.render.chunk_size)
    mine = [k for k in range(len(chunks)) if k % count == index]
    for k in mine:  # half-written files of a killed run (only our shard's: others may be live)
        for leftover in out.glob(f".chunk-{k:05d}.*.tmp"):
            leftover.unlink(missing_ok=True)
    todo = [k for k in mine if not chunk_is_done(out, k, chunks[k], exp.render)]
    reused = sum(len(chunks[k]) for k in mine if k not in todo)
    cache = RenderCache(folder, exp.render, renderer_fingerprint()) if folder else None
    counts, blender = [], []
    for k in todo:  # chunks the cache holds whole are assembled here; only the others need Blender
        taken = cache.get_all(chunks[k].render_id) if cache is not None else None
        if taken is None:
            blender.append(k)
        else:
            counts.append(_render_chunk(_job(k, chunks, out, exp.render, folder), taken)[1:])
    workers = min(workers, max(len(blender), 1))
    threads = threads or max(1, usable_cores() // workers)
    if blender:
        counts += _run_workers(exp.render, table, chunks, blender, out, workers, threads,
                               progress, folder)
    rendered = sum(n for n, _ in counts)
    cached = sum(n for _, n in counts)
    if count == 1:  # a whole run owns the directory: drop chunks of an older, larger table
        for stale in out.glob("chunk-*"):
            if int(stale.name[6:11]) >= len(chunks):
                stale.unlink()
    return RenderSummary(out, rendered, cached, reused, len(mine), time.perf_counter() - start,
                         workers, threads, folder)


def _job(k: int, chunks, out: Path, settings: RenderSettings, folder: Path | None) -> tuple:
    return (k, _records(chunks[k]), str(out), settings.model_dump_json(),
            str(folder) if folder else None, renderer_fingerprint())


def _run_workers(settings: RenderSettings, table: pd.DataFrame, chunks, todo, out: Path,
                 workers: int, threads: int, progress: bool,
                 folder: Path | None) -> list[tuple[int, int]]:
    from tqdm import tqdm

    meshes = _files(table, "shape")
    images = _files(table, "background")
    settings_json = settings.model_dump_json()
    jobs = [_job(k, chunks, out, settings, folder) for k in todo]
    ctx = multiprocessing.get_context("spawn")  # a fresh interpreter: bpy wants its own
    total = sum(len(chunks[k]) for k in todo)
    ram = "/dev/shm" if os.path.isdir("/dev/shm") else None
    remove_stale(ram or tempfile.gettempdir(), SCRATCH)  # what killed renders left there
    with tempfile.TemporaryDirectory(prefix=f"{SCRATCH}{os.getpid()}-", dir=ram) as scratch, \
            tqdm(total=total, unit="img", desc="render", disable=not progress) as bar:
        # Not multiprocessing.Pool: when one of its workers dies (the kernel's out-of-memory
        # killer, a crash in Blender) the pool starts another and waits for the lost chunk forever
        pool = ProcessPoolExecutor(workers, ctx, _init_worker, (settings_json, meshes, images,
                                                                scratch, threads, ctx.Value("i", 0)))
        counts, finished = [], False
        try:
            for done in as_completed([pool.submit(_render_chunk, job) for job in jobs]):
                _, rendered, cached = done.result()
                counts.append((rendered, cached))
                bar.update(rendered + cached)
            finished = True
        except BrokenProcessPool:
            raise CuelabError(
                f"render: a Blender worker died (killed, often for lack of memory, or crashed) "
                f"with {len(counts)} of {len(jobs)} chunks done; what was written is kept: run "
                f"again to render the rest, with fewer workers (--workers, now {workers}) if "
                "memory is short") from None
        finally:
            if not finished:  # stop the other workers now, not after their chunks (through
                # a private attribute: before Python 3.14's terminate_workers there is no other)
                for process in list((getattr(pool, "_processes", None) or {}).values()):
                    process.kill()
            pool.shutdown(wait=True, cancel_futures=True)
    return counts


def _files(table: pd.DataFrame, name: str) -> list[str]:
    """The files a factor's open values name (user meshes, background images)."""
    f = REGISTRY[name]
    return sorted({p for v in table[name].unique() if (p := f.file_of(v)) is not None})


def _records(rows: pd.DataFrame) -> list[dict]:
    records = rows.to_dict("records")
    for r in records:  # plain Python values for the workers
        for key, value in r.items():
            if hasattr(value, "item"):
                r[key] = value.item()
    return records
