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

from .artifacts import load_csv, save_csv
from .bundle import Bundle
from .featurize import iter_batches, load_and_preprocess
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
            missing.append(f"{source}: no such file or folder, or nothing in it" if not path.exists()
                           else f"{source}: holds no files")
        for f in found:
            key = f.resolve()
            if key not in seen:
                seen.add(key)
                files.append(f)
    return files, missing


def predict_files(bundle: Bundle, files: list[Path], batch_size: int = 32, workers: int = 2, progress: bool = True
                  ) -> tuple[np.ndarray, list[str | None], float]:
    """(probabilities (N, K), NaN rows for unreadable files; the error of each file or None; images per second)."""
    probabilities = np.full((len(files), len(bundle.labels)), np.nan, np.float32)
    errors: list[str | None] = [None] * len(files)
    start = time.perf_counter()
    with tqdm(total=len(files), desc="predicting", unit="img", disable=not progress) as bar:
        for indices, batch, failed in iter_batches(files, lambda p: load_and_preprocess(p, bundle.input_size),
                                                   batch_size, workers=workers):
            if batch is not None:
                probabilities[indices] = bundle.run(batch)[0]
            for index, reason in failed:
                errors[index] = reason
            bar.update(len(indices) + len(failed))
    elapsed = max(time.perf_counter() - start, 1e-9)
    return probabilities, errors, len(files) / elapsed


def margin_and_entropy(probabilities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row: the best probability minus the second best, and the entropy in bits."""
    top = -np.sort(-probabilities, axis=1)
    margin = top[:, 0] - (top[:, 1] if probabilities.shape[1] > 1 else 0)
    p = np.clip(probabilities, 1e-12, 1)
    return margin, -(p * np.log2(p)).sum(1)


def to_label_rows(files: list[Path], probabilities: np.ndarray, errors: list[str | None], labels: list[str]
                  ) -> list[dict]:
    """The rows of ``to_label.csv``: the readable images, smallest margin (most worth labelling) first, then the
    unreadable ones with their reason."""
    margin, entropy = margin_and_entropy(np.nan_to_num(probabilities))
    good = [i for i, e in enumerate(errors) if e is None]
    rows = []
    for i in sorted(good, key=lambda i: (margin[i], str(files[i]))):
        best = int(np.argmax(probabilities[i]))
        rows.append({"rank": len(rows) + 1, "path": str(files[i]), "margin": round(float(margin[i]), 6),
                     "entropy": round(float(entropy[i]), 6), "label": labels[best],
                     "probability": round(float(probabilities[i, best]), 6), "error": "",
                     **{f"p_{label}": round(float(p), 6) for label, p in zip(labels, probabilities[i])}})
    for i, e in enumerate(errors):
        if e is not None:
            rows.append({"rank": "", "path": str(files[i]), "margin": "", "entropy": "", "label": "",
                         "probability": "", "error": e, **{f"p_{label}": "" for label in labels}})
    return rows


def write_csv(path: Path, rows: list[dict], labels: list[str]) -> None:
    save_csv(path, rows, ["rank", "path", "margin", "entropy", "label", "probability", "error"] + [f"p_{l}" for l in labels])


def read_csv(path: Path) -> list[dict]:
    return load_csv(path)
