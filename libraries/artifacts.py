"""Writing artifacts atomically (temp file, then rename) in open formats: JSON, NPZ, PNG, torch state dicts."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | Path):
    """Yield a temporary path next to ``path``; on success it replaces ``path`` in one rename.

    A crash or kill mid-write leaves the old file (or none) in place, never a half-written one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes files private; artifacts are ordinary files
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def save_json(path: str | Path, obj) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def load_json(path: str | Path):
    return json.loads(Path(path).read_text(encoding="utf-8"))


def save_csv(path: str | Path, rows: list[dict], columns: list[str] | tuple[str, ...]) -> None:
    """``rows`` as a CSV with a header of ``columns`` (UTF-8, written atomically)."""
    import csv

    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, list(columns))
        writer.writeheader()
        writer.writerows(rows)


def load_csv(path: str | Path) -> list[dict]:
    """A CSV's rows as dicts of strings, keyed by its header."""
    import csv

    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def save_npz(path: str | Path, **arrays) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)


def load_npz(path: str | Path) -> dict:
    """All arrays of an .npz file, loaded eagerly; pickled object arrays are refused."""
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def save_parquet(path: str | Path, rows: list[dict], columns: list[str]) -> None:
    """Rows (dicts; None for a missing value) as a Parquet table with ``columns`` in that order, written atomically."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    with atomic_path(path) as tmp:
        pq.write_table(pa.Table.from_pylist(rows).select(columns) if rows else pa.table({c: [] for c in columns}), tmp)


def save_png(path: str | Path, image: np.ndarray) -> None:
    """An (H, W, 3) uint8 RGB array as a PNG, written atomically."""
    from PIL import Image

    with atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp, "PNG")


def save_figure(path: str | Path, figure) -> None:
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        figure.savefig(tmp, format=Path(path).suffix.lstrip(".") or "png", dpi=110, bbox_inches="tight")
    plt.close(figure)


def save_torch(path: str | Path, obj) -> None:
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def file_digest(path: str | Path, chunk: int = 1 << 20) -> str:
    """BLAKE2b digest of a file's content, as hex."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


HASHING_BAR_FROM = 500  # hashing this many files or more shows a progress bar (locally and on Ray)


def safe_digest(path: str | Path) -> str:
    """``file_digest``, or '' for a file that cannot be read (whoever reads it next reports why)."""
    try:
        return file_digest(path)
    except OSError:
        return ""


def text_digest(obj) -> str:
    """Stable digest of a JSON-able object, e.g. the parameters that an artifact depends on."""
    return hashlib.blake2b(json.dumps(obj, sort_keys=True).encode(), digest_size=16).hexdigest()


def content_digest(**arrays: np.ndarray) -> str:
    """A digest of named arrays' contents (an .npz file's own bytes also hold write times), read in blocks of 64 MB."""
    h = hashlib.blake2b(digest_size=16)
    for name in sorted(arrays):
        array = arrays[name]  # an array, or anything with its shape and dtype that slices into arrays, read in blocks
        h.update(name.encode() + str(np.dtype(array.dtype)).encode() + str(tuple(array.shape)).encode())
        if len(array.shape) == 0:
            h.update(np.ascontiguousarray(array).tobytes())
            continue
        step = max(1, (64 << 20) // max(1, np.dtype(array.dtype).itemsize * int(np.prod(array.shape[1:]))))
        for start in range(0, len(array), step):
            h.update(np.ascontiguousarray(array[start:start + step]).tobytes())
    return h.hexdigest()
