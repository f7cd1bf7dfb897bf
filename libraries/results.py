"""The test set's predictions, for browsing: per-image rows with the truth, the prediction and the per-class
probabilities that script 5 computed (the same calibrated probabilities the service answers), filtered and
ordered. Read only after checking that they belong to the artifacts on disk now."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from . import provenance
from .artifacts import file_digest, load_json, load_npz, save_json, save_npz
from .errors import StaleArtifact
from .layout import SCRIPTS, DatasetPaths


def load(test_scores_path: Path, labels: list[str]) -> list[dict]:
    """One row per test image: path, true and predicted label, correct, confidence and probabilities."""
    data = load_npz(test_scores_path)
    rows = []
    for path, truth, p in zip(data["paths"], data["labels"], data["probabilities"]):
        predicted = int(np.argmax(p))
        rows.append({"path": str(path), "true": labels[int(truth)], "predicted": labels[predicted],
                     "correct": predicted == int(truth), "confidence": float(p[predicted]),
                     "probabilities": dict(zip(labels, map(float, p)))})
    return rows


def load_for(paths: DatasetPaths, params: dict | None = None) -> list[dict]:
    """The rows of the evaluation that script 5 wrote last, refused if it is out of date with the features and
    classifier on disk, or if ``test_scores.npz`` is not the file ``metrics.json`` was written with. With
    ``params`` (a notebook's parameters), also refused unless it was made with them (classifier and all)."""
    if params is None:
        provenance.check_evaluation(paths)
    else:
        provenance.check_chain(paths, params, upto="evaluation")
        provenance.check(paths, "evaluation", params)
    metrics = load_json(paths.metrics)
    if not paths.test_scores.is_file() or metrics.get("test_scores_digest") != file_digest(paths.test_scores):
        raise StaleArtifact(f"{paths.test_scores} is missing or is not the file {paths.metrics.name} was written with: "
                            f"rerun {SCRIPTS['evaluation']}")
    return load(paths.test_scores, metrics["labels"])


def select(rows: list[dict], only_wrong: bool = False, worst_first: bool = False) -> list[dict]:
    """Filter to the mistakes, and/or order so that the most confident mistakes come first (then the least
    confident correct predictions)."""
    chosen = [r for r in rows if not r["correct"]] if only_wrong else list(rows)
    if worst_first:
        chosen.sort(key=lambda r: (r["correct"], -r["confidence"] if not r["correct"] else r["confidence"]))
    return chosen


def save(paths: DatasetPaths, image_paths: np.ndarray, labels: np.ndarray, probabilities: np.ndarray,
         raw_scores: np.ndarray, metrics: dict) -> dict:
    """``test_scores.npz`` (per test image: path, true label id, probabilities, raw scores), then ``metrics.json``
    naming its digest: the pair is read back by ``load_for`` only as written together."""
    save_npz(paths.test_scores, paths=np.asarray(image_paths), labels=np.asarray(labels),
             probabilities=probabilities.astype(np.float32), raw_scores=raw_scores.astype(np.float32))
    metrics = {**metrics, "test_scores_digest": file_digest(paths.test_scores)}
    save_json(paths.metrics, metrics)
    return metrics
