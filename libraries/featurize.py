"""Turning images into the DNN's pooled penultimate vectors, fast and incrementally.

Images stream through in batches: threads decode and preprocess the next batches while the engine runs the
current one. The engine is chosen by measurement (DESIGN.md section 7): on a GPU, torch with CUDA and mixed
precision; on the CPU, onnxruntime on the same network exported to ONNX (about 2x torch eager there), with
torch as the fallback. A cache keyed on the image's content and the model/preprocessing key makes a rerun
after adding 10 images featurize only those 10; it is a folder of parts that are appended to and never rewritten,
and it is read by memory map, so that its size costs the process 32 bytes of digest per vector, not the vector.
"""
from __future__ import annotations

import json
import os
import time
import warnings
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
from tqdm.auto import tqdm

from .artifacts import (HASHING_BAR_FROM, atomic_path, content_digest, file_digest, load_json, load_npz, safe_digest,
                        save_json, save_npz)
from .errors import BadParameter, MissingArtifact, StaleArtifact
from .images import ImageError
from .layout import SCRIPTS
from .presets import load_and_preprocess


class OnnxEngine:
    name = "onnxruntime"

    def __init__(self, onnx_path: Path, threads: int | None = None):
        from .onnx_export import open_session

        self.session = open_session(onnx_path, threads or os.cpu_count() or 1)
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: batch})[0]


class TorchEngine:
    def __init__(self, module, device: str = "cpu"):
        import torch

        self.torch = torch
        self.device = torch.device(device)
        self.module = module.to(self.device).eval()
        self.amp = self.device.type == "cuda"
        if self.device.type == "cpu":
            self.module = self.module.to(memory_format=torch.channels_last)
        self.name = f"torch ({self.device.type}{', mixed precision' if self.amp else ''})"

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        torch = self.torch
        x = torch.from_numpy(batch).to(self.device, non_blocking=True)
        with torch.inference_mode(), torch.autocast(self.device.type, enabled=self.amp):
            return self.module(x).float().cpu().numpy()


def choose_engine(requested: str = "auto") -> str:
    """'cuda' (torch on a GPU), 'onnxruntime', 'cpu' (torch on the CPU) or 'ray' (onnxruntime on Ray Data)."""
    import torch

    if requested == "ray":
        return "ray"
    if requested == "torch":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "auto" and torch.cuda.is_available():
        return "cuda"
    try:
        import onnxruntime  # noqa: F401

        return "onnxruntime"
    except ImportError:
        if requested == "onnxruntime":
            raise BadParameter("run_engine='onnxruntime' but onnxruntime is not installed: pip install onnxruntime") from None
        return "cpu"


def make_engine(model_meta: Path, onnx_path: Path, onnx_meta: Path, requested: str = "auto", tta: str = "none"):
    """The engine that featurizes with the model of ``model_meta`` and test-time augmentation ``tta``: torch on a
    GPU (or when asked for), else onnxruntime on the network exported to ``onnx_path``, here or on Ray Data
    (``requested='ray'``). The export is kept, with ``onnx_meta`` naming the model's feature key, and redone only
    when the model or ``tta`` changes."""
    from .backbones import FeatureExtractor
    from .model_io import feature_key, load_model
    from .onnx_export import export_onnx

    kind = choose_engine(requested)
    model, meta = load_model(model_meta)
    extractor = FeatureExtractor(model, tta).eval()
    if kind in ("cuda", "cpu"):
        return TorchEngine(extractor, device=kind)
    key = feature_key(meta, tta)
    onnx_path, onnx_meta = Path(onnx_path), Path(onnx_meta)
    if not (onnx_path.is_file() and onnx_meta.is_file() and load_json(onnx_meta).get("feature_key") == key
            and load_json(onnx_meta).get("onnx_digest") == file_digest(onnx_path)):
        export_onnx(extractor, onnx_path, meta["input_size"])
        save_json(onnx_meta, {"feature_key": key, "backbone": meta["backbone"], "input_size": meta["input_size"], "tta": tta,
                              "onnx_digest": file_digest(onnx_path)})
    if kind == "ray":
        from .on_ray import RayEngine

        return RayEngine(onnx_path)
    return OnnxEngine(onnx_path)


SHARD_ROWS = 100_000  # vectors per Parquet shard (about 0.5 GB at 1280 numbers)


def save_features(path: Path, features: np.ndarray, image_paths: list[str], labels: list[int], subset: list[str],
                  feature_key: str, provenance: dict, shard_dir: Path | None = None, shard_above: int | None = None) -> None:
    """``features.npz``: one row per image (vector, relative path, label id, 'train' or 'test'), the model's feature
    key, its provenance, and a digest of its content (its identity for the artifacts made from it).

    With more than ``shard_above`` images, the vectors go to Parquet shards of ``SHARD_ROWS`` in ``shard_dir``
    (columns ``row``, ``vector``) and ``features.npz`` names each shard with its digest; the content digest is the
    same either way. New shards get new names, and the old ones are deleted only after ``features.npz`` names the
    new: a crash never leaves it naming a half-written shard."""
    arrays = {"features": features if isinstance(features, CachedRows) else np.asarray(features, np.float32),
              "paths": np.array(image_paths, dtype=str), "labels": np.array(labels, dtype=np.int64), "subset": np.array(subset, dtype=str)}
    meta = dict(feature_key=np.array(feature_key), provenance=np.array(json.dumps(provenance)),
                content_digest=np.array(content_digest(**arrays)))
    old = list(Path(shard_dir).glob("*.parquet")) if shard_dir is not None and Path(shard_dir).is_dir() else []
    names = []
    if shard_above is None or len(arrays["features"]) <= shard_above:
        save_npz(path, **{**arrays, "features": np.asarray(arrays["features"])}, **meta)
    else:
        names = write_shards(Path(shard_dir), arrays.pop("features"), str(meta["content_digest"])[:8])
        save_npz(path, **arrays, **meta, shards=np.array(names, dtype=str),
                 shard_digests=np.array([file_digest(Path(shard_dir) / name) for name in names], dtype=str))
    for stale in old:  # only now that features.npz names what it uses
        if stale.name not in names:
            stale.unlink()


def write_shards(folder: Path, vectors: np.ndarray, tag: str) -> list[str]:
    """``vectors`` as Parquet files of ``SHARD_ROWS`` rows each in ``folder``; returns their names."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for number, start in enumerate(range(0, len(vectors), SHARD_ROWS)):
        block = vectors[start:start + SHARD_ROWS]
        table = pa.table({"row": pa.array(np.arange(start, start + len(block), dtype=np.int64)),
                          "vector": pa.FixedSizeListArray.from_arrays(pa.array(block.ravel()), block.shape[1])})
        names.append(f"part-{number:05d}-{tag}.parquet")
        with atomic_path(folder / names[-1]) as tmp:
            pq.write_table(table, tmp)
    return names


def load_features(path: Path, shard_dir: Path | None = None) -> dict:
    """What ``save_features`` wrote, the vectors in ``"features"`` whether in the .npz or in its Parquet shards (each
    checked against the digest the .npz records; a missing or changed shard is refused)."""
    data = load_npz(path)
    if "shards" not in data:
        return data
    import pyarrow.parquet as pq

    blocks = []
    for name, digest in zip(data.pop("shards").tolist(), data.pop("shard_digests").tolist()):
        shard = Path(shard_dir) / name
        if not shard.is_file():
            raise MissingArtifact(f"{shard} does not exist, but {Path(path).name} names it: rerun {SCRIPTS['features']}")
        if file_digest(shard) != digest:
            raise StaleArtifact(f"{shard} is not the shard {Path(path).name} was written with: rerun {SCRIPTS['features']}")
        column = pq.read_table(shard, columns=["vector"]).column("vector").combine_chunks()
        blocks.append(column.flatten().to_numpy(zero_copy_only=False).reshape(len(column), -1))
    data["features"] = np.concatenate(blocks).astype(np.float32, copy=False)
    return data


def iter_batches(items: list, load: Callable, batch_size: int, workers: int = 2, prefetch_batches: int = 2
                 ) -> Iterable[tuple[list[int], np.ndarray | None, list[tuple[int, str]]]]:
    """Yield (indices, stacked arrays, [(index, error)]) per batch, loading up to ``prefetch_batches`` ahead in threads.

    Memory stays bounded by the prefetch window, whatever the number of items.
    """
    with ThreadPoolExecutor(max(1, workers)) as pool:
        pending = deque()
        position = 0

        def fill():
            nonlocal position
            while position < len(items) and len(pending) < batch_size * (prefetch_batches + 1):
                pending.append((position, pool.submit(load, items[position])))
                position += 1

        fill()
        while pending:
            indices, arrays, errors = [], [], []
            while pending and len(indices) + len(errors) < batch_size:
                index, future = pending.popleft()
                try:
                    arrays.append(future.result())
                    indices.append(index)
                except ImageError as err:
                    errors.append((index, err.reason))
            fill()
            yield indices, (np.stack(arrays) if arrays else None), errors


def run_batches(engine: Callable, paths: list[Path], size: int, batch_size: int, workers: int = 2
                ) -> Iterable[tuple[list[int], np.ndarray | None, list[tuple[int, str]]]]:
    """(positions into ``paths``, ``engine``'s outputs for those that were read, [(position, reason)] for those
    that were not) per batch: on Ray Data for an engine that streams by itself (``on_ray.RayEngine``), else
    decoded here in threads, ahead of ``engine``."""
    if hasattr(engine, "stream"):
        return engine.stream(paths, size, batch_size)
    return ((positions, None if batch is None else engine(batch), errors) for positions, batch, errors
            in iter_batches(paths, lambda path: load_and_preprocess(path, size), batch_size, workers))


UNREADABLE_FILE = "the file cannot be read"
HASH_THREADS = 4  # files hashed at once on this machine (hashlib releases the GIL; the disk is the limit)


def hash_files(paths: list[Path], progress: bool = True) -> np.ndarray:
    """Every file's content digest (``safe_digest``) as 32 ASCII bytes, in threads, with a progress bar."""
    with ThreadPoolExecutor(HASH_THREADS) as pool:
        digests = list(tqdm(pool.map(safe_digest, paths, chunksize=64), total=len(paths), desc="hashing", unit="img",
                            disable=not progress or len(paths) < HASHING_BAR_FROM))
    return np.array(digests, dtype="S32")


class FeatureCache:
    """Vectors keyed by image content digest, for one model/preprocessing key: a folder of parts, each a pair
    ``part-NNNNN.vectors.npy`` / ``part-NNNNN.digests.npy`` written once and never rewritten.

    New vectors wait in memory until ``flush`` appends them as a new part (the digests last: a part without its
    digests is a crash's leftover, ignored). Opening a cache reads only the digests; the vectors are memory-mapped
    and read when asked for, so a cache of millions of vectors costs its driver 32 bytes per vector. Many small parts
    (one per flush and rerun) are merged into one when there are more than ``MAX_SMALL_PARTS``."""

    MAX_SMALL_PARTS = 32
    SMALL_PART_ROWS = 50_000

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self._parts: list[tuple[str, np.ndarray]] = []  # (name, memory-mapped vectors)
        self._digests: list[np.ndarray] = []  # each part's digests, in memory (32 bytes a vector)
        self._keys = None  # the sorted index over them (``_index``)
        self._pending: dict[bytes, np.ndarray] = {}
        legacy = self.folder.with_suffix(".npz")  # one .npz per key, as versions before the parts wrote it
        if legacy.is_file():
            try:
                data = load_npz(legacy)
                self.add(data["digests"].astype("S32"), data["vectors"])
                self.flush()
            except Exception as err:  # a damaged cache is only a lost speed-up
                warnings.warn(f"feature cache {legacy} is unreadable ({err}); featurizing from scratch")
            legacy.unlink()
        self._parts, self._digests = [], []
        for name in self._part_names():
            try:
                vectors = np.load(self.folder / f"{name}.vectors.npy", mmap_mode="r")
                part = np.load(self.folder / f"{name}.digests.npy")
                if len(part) != len(vectors):
                    raise ValueError(f"{len(part)} digests for {len(vectors)} vectors")
            except Exception as err:
                warnings.warn(f"feature cache part {self.folder / name} is unreadable ({err}); its images are featurized again")
                continue
            self._parts.append((name, vectors))
            self._digests.append(part)

    def _part_names(self) -> list[str]:
        return sorted(p.name[:-len(".digests.npy")] for p in self.folder.glob("part-*.digests.npy"))

    def _index(self) -> None:
        """A sorted index over the parts' digests: (digest, part number, row)."""
        digests = self._digests
        keys = np.concatenate(digests) if digests else np.zeros(0, "S32")
        part = np.concatenate([np.full(len(d), k, np.int32) for k, d in enumerate(digests)]) if digests else np.zeros(0, np.int32)
        row = np.concatenate([np.arange(len(d)) for d in digests]) if digests else np.zeros(0, np.int64)
        order = np.argsort(keys, kind="stable")
        self._keys, self._part, self._row = keys[order], part[order], row[order]

    def _find(self, digests: np.ndarray) -> np.ndarray:
        """Positions in the index of ``digests`` (-1 where absent)."""
        if self._keys is None:
            self._index()
        at = np.searchsorted(self._keys, digests)
        found = at < len(self._keys)
        found[found] = self._keys[at[found]] == digests[found]
        return np.where(found, at, -1)

    def __len__(self) -> int:
        return sum(len(d) for d in self._digests) + len(self._pending)

    def contains(self, digests: np.ndarray) -> np.ndarray:
        digests = np.asarray(digests, "S32")
        found = self._find(digests) >= 0
        if self._pending:
            found |= np.array([d in self._pending for d in digests.tolist()], bool)
        return found

    def add(self, digests: np.ndarray, vectors: np.ndarray) -> None:
        for digest, vector in zip(np.asarray(digests, "S32").tolist(), vectors):
            self._pending[digest] = np.asarray(vector, np.float32)

    def get(self, digests: np.ndarray) -> np.ndarray:
        """The vectors of ``digests`` (every one must be in the cache), read part by part."""
        digests = np.asarray(digests, "S32")
        at = self._find(digests)
        if len(digests) == 0:
            return np.zeros((0, self.width), np.float32)
        out = np.empty((len(digests), self.width), np.float32)
        stored = at >= 0
        for number in np.unique(self._part[at[stored]]):
            mine = np.flatnonzero(stored)[self._part[at[stored]] == number]
            rows = self._row[at[mine]]
            order = np.argsort(rows)  # in file order: a memory map reads fastest forwards
            out[mine[order]] = self._parts[number][1][rows[order]]
        for k in np.flatnonzero(~stored):
            out[k] = self._pending[digests[k]]
        return out

    @property
    def width(self) -> int:
        if self._parts:
            return self._parts[0][1].shape[1]
        return len(next(iter(self._pending.values()))) if self._pending else 0

    def flush(self) -> None:
        """Append the pending vectors as a new part, then merge small parts if there are too many."""
        if not self._pending:
            return
        digests = np.array(list(self._pending), dtype="S32")
        self._write(self._next_name(), digests, [np.stack(list(self._pending.values()))])
        self._pending = {}
        small = [n for n, v in self._parts if len(v) < self.SMALL_PART_ROWS]
        if len(small) > self.MAX_SMALL_PARTS:
            self._merge(small)

    def _next_name(self) -> str:
        names = self._part_names()
        return f"part-{int(names[-1][5:]) + 1 if names else 0:05d}"

    def _write(self, name: str, digests: np.ndarray, blocks: list[np.ndarray]) -> None:
        """A new part of ``digests`` and the vectors of ``blocks``, copied one block at a time into the file."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.folder / f"{name}.vectors.npy") as tmp:
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(len(digests), blocks[0].shape[1]))
            at = 0
            for block in blocks:
                out[at:at + len(block)] = block
                at += len(block)
            out.flush()
            del out
        with atomic_path(self.folder / f"{name}.digests.npy") as tmp, open(tmp, "wb") as f:
            np.save(f, digests)
        self._parts.append((name, np.load(self.folder / f"{name}.vectors.npy", mmap_mode="r")))
        self._digests.append(digests)
        self._keys = None  # the index is rebuilt when next asked (once at the end of a run, not at every flush)

    def _merge(self, names: list[str]) -> None:
        """``names`` as one new part; the old ones are deleted after it is written (a crash leaves both: harmless)."""
        chosen = [k for k, (n, _) in enumerate(self._parts) if n in names]
        merged = [self._parts[k] for k in chosen]
        digests = np.concatenate([self._digests[k] for k in chosen])
        self._parts = [p for k, p in enumerate(self._parts) if k not in chosen]
        self._digests = [d for k, d in enumerate(self._digests) if k not in chosen]
        self._write(self._next_name(), digests, [v for _, v in merged])
        for name, _ in merged:
            for suffix in (".digests.npy", ".vectors.npy"):  # the digests first: a part is never half there
                (self.folder / f"{name}{suffix}").unlink(missing_ok=True)


def featurize(paths: list[Path], engine: Callable[[np.ndarray], np.ndarray], size: int, cache: FeatureCache,
              batch_size: int = 64, workers: int = 2, save_every_s: float = 60.0, progress: bool = True
              ) -> tuple[np.ndarray, np.ndarray, list[tuple[Path, str]]]:
    """Features of every path, from the cache where it holds them and from ``engine`` otherwise.

    Returns (features (N_ok, D) float32, indices into ``paths`` of those rows, [(path, reason)] of failures).
    The files are hashed where the engine works (in Ray tasks for ``on_ray.RayEngine``, in threads here otherwise).
    New vectors are appended to ``cache`` every ``save_every_s`` seconds and at the end, so an interrupted run
    loses at most that much work, and memory holds at most that many new vectors.
    """
    digests = engine.digests(paths, progress) if hasattr(engine, "digests") else hash_files(paths, progress)
    unhashed = digests == b""
    failures = [(paths[i], UNREADABLE_FILE) for i in np.flatnonzero(unhashed)]
    todo = np.flatnonzero(~cache.contains(digests) & ~unhashed)
    last_save = time.monotonic()
    if len(todo):
        bar = tqdm(total=len(todo), desc=f"featurizing ({len(paths) - len(todo)} cached)", unit="img", disable=not progress)
        for indices, vectors, errors in run_batches(engine, [paths[i] for i in todo], size, batch_size, workers):
            failures += [(paths[todo[k]], reason) for k, reason in errors]
            if vectors is not None:
                cache.add(digests[todo[indices]], vectors)
            bar.update(len(indices) + len(errors))
            if time.monotonic() - last_save > save_every_s:
                cache.flush()
                last_save = time.monotonic()
        bar.close()
        cache.flush()
    elif progress:
        print(f"all {len(paths)} images were in the feature cache: nothing to featurize")
    rows = np.flatnonzero(cache.contains(digests))
    return CachedRows(cache, digests[rows]), rows, failures


class CachedRows:
    """The vectors of ``digests`` in a ``FeatureCache``, read when sliced (``np.asarray`` reads them all): what
    ``featurize`` returns, so that writing a million vectors to Parquet shards never holds them all in memory."""

    dtype = np.dtype(np.float32)
    ndim = 2

    def __init__(self, cache: FeatureCache, digests: np.ndarray):
        self.cache, self.digests = cache, digests

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.digests), self.cache.width if len(self.digests) else 0

    def __len__(self) -> int:
        return len(self.digests)

    def __getitem__(self, key):
        if isinstance(key, slice):
            return self.cache.get(self.digests[key])
        return np.asarray(self)[key]

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        array = self.cache.get(self.digests)
        return array if dtype is None else array.astype(dtype, copy=False)
