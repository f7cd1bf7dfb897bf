"""Turning images into the DNN's pooled penultimate vectors, fast and incrementally.

Images stream through in batches: threads decode and preprocess the next batches while the engine runs the
current one. The engine is chosen by measurement (DESIGN.md section 7): on a GPU, torch with CUDA and mixed
precision; on the CPU, onnxruntime on the same network exported to ONNX (about 2x torch eager there), with
torch as the fallback. A cache keyed on the image's content and the model/preprocessing key makes a rerun
after adding 10 images featurize only those 10.
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

from .artifacts import atomic_path, content_digest, file_digest, load_json, load_npz, save_json, save_npz
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
    arrays = {"features": np.asarray(features, np.float32), "paths": np.array(image_paths, dtype=str),
              "labels": np.array(labels, dtype=np.int64), "subset": np.array(subset, dtype=str)}
    meta = dict(feature_key=np.array(feature_key), provenance=np.array(json.dumps(provenance)),
                content_digest=np.array(content_digest(**arrays)))
    old = list(Path(shard_dir).glob("*.parquet")) if shard_dir is not None and Path(shard_dir).is_dir() else []
    names = []
    if shard_above is None or len(arrays["features"]) <= shard_above:
        save_npz(path, **arrays, **meta)
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


class FeatureCache:
    """Vectors keyed by image content digest, for one model/preprocessing key, in one .npz file."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.vectors: dict[str, np.ndarray] = {}
        if self.path.is_file():
            try:
                data = load_npz(self.path)
                self.vectors = dict(zip(data["digests"].tolist(), data["vectors"]))
            except Exception as err:  # a damaged cache is only a lost speed-up
                warnings.warn(f"feature cache {self.path} is unreadable ({err}); featurizing from scratch")

    def save(self) -> None:
        if self.vectors:
            digests = np.array(list(self.vectors))
            save_npz(self.path, digests=digests, vectors=np.stack(list(self.vectors.values())).astype(np.float32))


def featurize(paths: list[Path], engine: Callable[[np.ndarray], np.ndarray], size: int, cache: FeatureCache,
              batch_size: int = 64, workers: int = 2, save_every_s: float = 60.0, progress: bool = True
              ) -> tuple[np.ndarray, np.ndarray, list[tuple[Path, str]]]:
    """Features of every path, from the cache where it holds them and from ``engine`` otherwise.

    Returns (features (N_ok, D) float32, indices into ``paths`` of those rows, [(path, reason)] of failures).
    New vectors are added to ``cache`` and saved every ``save_every_s`` seconds and at the end, so an
    interrupted run loses at most that much work.
    """
    digests = [file_digest(p) for p in tqdm(paths, desc="hashing", unit="img", disable=not progress or len(paths) < 500)]
    todo = [i for i, d in enumerate(digests) if d not in cache.vectors]
    failures = []
    last_save = time.monotonic()
    if todo:
        bar = tqdm(total=len(todo), desc=f"featurizing ({len(paths) - len(todo)} cached)", unit="img", disable=not progress)
        for indices, vectors, errors in run_batches(engine, [paths[i] for i in todo], size, batch_size, workers):
            failures += [(paths[todo[k]], reason) for k, reason in errors]
            if vectors is not None:
                for k, vector in zip(indices, vectors):
                    cache.vectors[digests[todo[k]]] = vector.astype(np.float32)
            bar.update(len(indices) + len(errors))
            if time.monotonic() - last_save > save_every_s:
                cache.save()
                last_save = time.monotonic()
        bar.close()
        cache.save()
    elif progress:
        print(f"all {len(paths)} images were in the feature cache: nothing to featurize")
    rows = [i for i, d in enumerate(digests) if d in cache.vectors]
    if not rows:
        return np.zeros((0, 0), np.float32), np.array([], int), failures
    return np.stack([cache.vectors[digests[i]] for i in rows]).astype(np.float32), np.array(rows), failures
