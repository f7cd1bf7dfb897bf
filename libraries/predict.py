"""Predicting image files with a deployed bundle (``bundle.read``: onnxruntime, no torch), batched, with the
unreadable files kept as rows that say why; and ranking unlabelled images by how unsure the model is of them,
the ones worth labelling next (``to_label.csv``).

Uncertainty is the *margin* of the calibrated probabilities, the best class's minus the runner-up's: an image with
a margin near 0 lies near the decision boundary, where a label teaches the model most. Entropy is given too.
"""
from __future__ import annotations

import glob
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .bundle import Bundle
from .errors import UserError
from .featurize import run_batches
from .on_ray import RayEngine
from .images import list_files


def collect_files(sources: list[str | Path]) -> tuple[list[Path], list[str]]:
    """The files that ``sources`` name: files as they are, folders recursively (hidden and system files left
    out), glob patterns expanded; each file once, in the order given. Also a message per source that names nothing."""
    files, missing, seen = [], [], set()
    for source in map(str, sources):
        path = Path(source).expanduser()
        if path.is_dir():
            found = list_files(path)
        elif path.is_file():
            found = [path]
        else:
            found = sorted(Path(p) for p in glob.glob(str(path), recursive=True) if Path(p).is_file())
        if not found:
            missing.append(f"{source}: holds no files" if path.is_dir() else
                           f"{source}: no such file or folder" if not any(c in source for c in "*?[") else
                           f"{source}: the pattern matches no file")
        for f in found:
            key = f.resolve()
            if key not in seen:
                seen.add(key)
                files.append(f)
    return files, missing


def predict_files(bundle: Bundle, files: list[Path], batch_size: int = 32, workers: int = 2, progress: bool = True,
                  engine: str = "local") -> tuple[np.ndarray, list[str | None], float]:
    """(probabilities (N, K), NaN rows for unreadable files; the error of each file or None; images per second).
    ``engine``: 'local' (onnxruntime here) or 'ray' (the bundle's graph on Ray Data, ``on_ray``)."""
    probabilities = np.full((len(files), len(bundle.labels)), np.nan, np.float32)
    errors: list[str | None] = [None] * len(files)
    run = RayEngine(bundle.model_path) if engine == "ray" else lambda batch: bundle.run(batch)[0]  # joins Ray first
    start = time.perf_counter()
    with tqdm(total=len(files), desc="predicting", unit="img", disable=not progress) as bar:
        for indices, found, failed in run_batches(run, files, bundle.input_size, batch_size, workers):
            if found is not None:
                probabilities[indices] = found
            for index, reason in failed:
                errors[index] = reason
            bar.update(len(indices) + len(failed))
    elapsed = max(time.perf_counter() - start, 1e-9)
    return probabilities, errors, len(files) / elapsed


def predict_sources(bundle: Bundle, sources: list[str | Path], batch_size: int = 32, progress: bool = True,
                    engine: str = "local"):
    """``collect_files`` then ``predict_files``: (files, probabilities, errors, img/s, messages about sources that
    name nothing). Raises ``UserError`` when no source names a file."""
    files, missing = collect_files(sources)
    if not files:
        raise UserError("; ".join(missing))
    probabilities, errors, speed = predict_files(bundle, files, batch_size=batch_size, progress=progress, engine=engine)
    return files, probabilities, errors, speed, missing


def margin_and_entropy(probabilities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row: the best probability minus the second best, and the entropy in bits."""
    top = -np.sort(-probabilities, axis=1)
    margin = top[:, 0] - (top[:, 1] if probabilities.shape[1] > 1 else 0)
    p = np.clip(probabilities, 1e-12, 1)
    return margin, -(p * np.log2(p)).sum(1)


PREDICTION_COLUMNS = ("path", "label", "probability", "error")


def columns(labels: list[str], first: tuple[str, ...] = (), then: tuple[str, ...] = ()) -> list[str]:
    """A predictions CSV's header: ``first``, path, label, probability, error, ``then``, one ``p_<class>`` per class."""
    return [*first, *PREDICTION_COLUMNS, *then] + [f"p_{label}" for label in labels]


def prediction_rows(paths: list, probabilities: np.ndarray, errors: list[str | None], labels: list[str]) -> list[dict]:
    """One row per file, in the given order: the most probable class and its probability, and every class's
    probability; an unreadable file's row has its ``error`` and nothing else."""
    rows = []
    for path, p, error in zip(paths, probabilities, errors):
        if error is not None:
            rows.append({"path": str(path), "label": "", "probability": "", "error": error,
                         **{f"p_{label}": "" for label in labels}})
            continue
        best = int(np.argmax(p))
        rows.append({"path": str(path), "label": labels[best], "probability": round(float(p[best]), 6), "error": "",
                     **{f"p_{label}": round(float(q), 6) for label, q in zip(labels, p)}})
    return rows


def with_nulls(rows: list[dict]) -> list[dict]:
    """The rows with each empty field as None (JSON's null, Parquet's missing value) rather than ''."""
    return [{k: (None if v == "" else v) for k, v in row.items()} for row in rows]


def to_label_rows(files: list[Path], probabilities: np.ndarray, errors: list[str | None], labels: list[str]
                  ) -> list[dict]:
    """The rows of ``to_label.csv``: the readable images, smallest margin (most worth labelling) first, then the
    unreadable ones with their reason."""
    margin, entropy = margin_and_entropy(np.nan_to_num(probabilities))
    rows = prediction_rows(files, probabilities, errors, labels)
    good = sorted((i for i, e in enumerate(errors) if e is None), key=lambda i: (margin[i], str(files[i])))
    ranked = [{**rows[i], "rank": rank, "margin": round(float(margin[i]), 6), "entropy": round(float(entropy[i]), 6)}
              for rank, i in enumerate(good, 1)]
    return ranked + [{**rows[i], "rank": "", "margin": "", "entropy": ""} for i, e in enumerate(errors) if e is not None]


TO_LABEL_FIRST, TO_LABEL_THEN = ("rank",), ("margin", "entropy")
