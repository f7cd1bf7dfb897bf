"""The test set's predictions, for browsing: per-image rows with the truth, the prediction and per-class
probabilities (a softmax of the scores, so that SVM and DNN scores compare), filtered and ordered."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .artifacts import load_json, load_npz
from .evaluation import softmax


def load(test_scores_path: Path, labels: list[str], classifier: str) -> list[dict]:
    """One row per test image: path, true and predicted label, correct, confidence and probabilities."""
    data = load_npz(test_scores_path)
    scores = data["scores"]
    probabilities = scores if classifier == "dnn" else softmax(scores)
    rows = []
    for path, truth, p in zip(data["paths"], data["labels"], probabilities):
        predicted = int(np.argmax(p))
        rows.append({"path": str(path), "true": labels[int(truth)], "predicted": labels[predicted],
                     "correct": predicted == int(truth), "confidence": float(p[predicted]),
                     "probabilities": dict(zip(labels, map(float, p)))})
    return rows


def load_for(proc_dir: Path) -> list[dict]:
    """The rows of the classifier that script 5 evaluated last in ``proc_dir``."""
    proc_dir = Path(proc_dir)
    metrics = load_json(proc_dir / "metrics.json")
    return load(proc_dir / "test_scores.npz", metrics["labels"], metrics["classifier"])


def select(rows: list[dict], only_wrong: bool = False, worst_first: bool = False) -> list[dict]:
    """Filter to the mistakes, and/or order so that the most confident mistakes come first (then the least
    confident correct predictions)."""
    chosen = [r for r in rows if not r["correct"]] if only_wrong else list(rows)
    if worst_first:
        chosen.sort(key=lambda r: (r["correct"], -r["confidence"] if not r["correct"] else r["confidence"]))
    return chosen
