"""Inputs refused at the door: what a file actually holds and what a reader said of it, in the
few words the messages that refuse it use. Each kind of input is checked where it is read (the
scenes and dataset tables in `cuelab.scenes.read_table`, the shards in `cuelab.data.load_split`,
the render chunks in `cuelab.render.read_renders`, the models in `cuelab.train`); this module
only describes."""

from __future__ import annotations

from pathlib import Path

# The first bytes of the kinds of file a step may find where it expected another.
MAGIC = ((b"\x89PNG\r\n\x1a\n", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"),
         (b"PAR1", "a Parquet table"), (b"\x93NUMPY", "a NumPy .npy array"),
         (b"PK\x03\x04", "a zip archive (.npz, PyTorch .pt)"),
         (b"SQLite format 3\x00", "an SQLite database"), (b"\x1f\x8b", "a gzip archive"))
ZIP_END = b"PK\x05\x06"  # the end-of-central-directory record, in a zip's last 64 KiB + 22


def holds(path: str | Path) -> str:
    """What the file at `path` holds, from its first and last bytes: 'nothing (0 bytes)',
    'a PNG image', 'a Parquet table, cut off (truncated)', 'JSON text', 'unrecognised bytes'..."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(1024)
            f.seek(max(0, size - (1 << 16) - 22))
            tail = f.read()
    except OSError as e:
        return f"nothing readable ({e.strerror or e})"
    if size == 0:
        return "nothing (0 bytes)"
    for magic, kind in MAGIC:
        if head.startswith(magic):
            cut = ((magic == b"PAR1" and not tail.endswith(b"PAR1"))
                   or (magic == b"PK\x03\x04" and ZIP_END not in tail))
            return f"{kind}, cut off (truncated)" if cut else kind
    text = head.decode("utf-8", errors="replace")
    if b"\x00" in head or text.count("\ufffd") > 4:  # a character cut at 1024 bytes is fine
        return f"unrecognised bytes ({size} bytes)"
    first = text.lstrip()[:1]
    return "JSON text" if first in ("{", "[") else "text" if first else "blank text"


def said(error: BaseException, most: int = 160) -> str:
    """An exception in a few words: its type and the first line of its message, cut to `most`
    characters (a reader's message may run to paragraphs)."""
    lines = str(error).strip().splitlines()
    first = lines[0] if lines else ""
    if len(first) > most:
        first = first[:most] + "..."
    return f"{type(error).__name__}: {first}" if first else type(error).__name__


def read_npz(path: str | Path, what: str, again: str) -> dict:
    """Every array of an .npz file, read whole without unpickling anything; a missing,
    truncated or foreign file is a `CuelabError` naming it, saying what it holds instead and
    `again` (the command that writes it). `what` names the file's kind: "a render chunk"."""
    import zipfile
    import zlib

    import numpy as np

    from .errors import CuelabError

    try:
        z = np.load(path, allow_pickle=False)
        if not isinstance(z, np.lib.npyio.NpzFile):  # a single .npy array under the name
            raise CuelabError(f"{path}: not {what}: it holds {holds(path)}; {again}")
        with z:
            return {key: z[key] for key in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise CuelabError(f"{path}: not readable {what.removeprefix('a ')}: it holds "
                          f"{holds(path)} ({said(e)}); {again}") from None
