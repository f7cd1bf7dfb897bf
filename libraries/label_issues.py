"""Label suspects: training images whose given label is likely wrong, found by confident learning (cleanlab) on
out-of-fold probabilities of the calibrated linear SVM over the cached features (``svm.out_of_fold_probabilities``).

``suspects.csv`` has one row per training image, most suspicious first: ``path``, ``given_label``,
``suggested_label`` (the class the out-of-fold model finds most likely), ``quality`` (cleanlab's label quality
score, the out-of-fold probability of the given label: low is suspicious) and ``label_issue`` (True for the
images ``cleanlab.filter.find_label_issues`` calls label issues).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from . import svm
from .artifacts import file_digest, load_csv, load_json, save_csv
from .errors import DatasetError

CSV_COLUMNS = ("path", "given_label", "suggested_label", "quality", "label_issue")


def find(features: np.ndarray, labels: np.ndarray, paths: list[str], label_names: list[str], c: float,
         folds: int = 5, l2: bool = True, random_state: int = 0) -> list[dict]:
    """The rows of ``suspects.csv`` for these (training) images, most suspicious first. Raises ``DatasetError`` when
    a class has fewer images than ``folds``: out-of-fold probabilities need every class in every fold."""
    from cleanlab.filter import find_label_issues  # imported here: the report and notebooks only read the CSV
    from cleanlab.rank import get_label_quality_scores

    labels = np.asarray(labels)
    counts = np.bincount(labels, minlength=len(label_names))
    needed = max(folds, 4)  # every fold, and the calibration's own folds inside it, must hold every class
    small = [(label_names[k], int(n)) for k, n in enumerate(counts) if 0 < n < needed]
    if small:
        named = ", ".join(f"{name!r} has {n}" for name, n in small)
        raise DatasetError(f"class {named} training image(s), fewer than the {needed} that out-of-fold probabilities "
                           f"need ({folds} folds, svm_cvFolds); add images to it")
    present = np.flatnonzero(counts)
    if len(present) < 2:
        raise DatasetError("fewer than two classes have training images")
    x = svm.l2_normalize(features) if l2 else features
    probabilities = svm.out_of_fold_probabilities(x, labels, c, len(label_names), folds, random_state)
    # cleanlab wants labels 0..K'-1 over the classes present
    compact = np.searchsorted(present, labels)
    given = probabilities[:, present]
    given = given / np.maximum(given.sum(1, keepdims=True), 1e-12)
    quality = get_label_quality_scores(compact, given)
    issue = find_label_issues(compact, given, n_jobs=1)
    suggested = present[given.argmax(1)]
    order = np.argsort(quality, kind="stable")
    return [{"path": paths[i], "given_label": label_names[labels[i]], "suggested_label": label_names[suggested[i]],
             "quality": round(float(quality[i]), 6), "label_issue": bool(issue[i])} for i in order]


def write_csv(path: Path, rows: list[dict]) -> None:
    save_csv(path, rows, CSV_COLUMNS)


def read_csv(path: Path) -> list[dict]:
    return [{**row, "quality": float(row["quality"]), "label_issue": row["label_issue"] == "True"} for row in load_csv(path)]


def summary(rows: list[dict]) -> dict:
    return {"training_images": len(rows), "label_issues": sum(r["label_issue"] for r in rows)}


def read_current(csv_path: Path, svm_meta_path: Path) -> list[dict] | None:
    """The rows of ``suspects.csv`` if it is the file ``svm.json`` records (same digest), else None: absent, turned
    off, or left from another run, so never shown beside an SVM it was not made with."""
    if not (Path(svm_meta_path).is_file() and Path(csv_path).is_file()):
        return None
    record = load_json(svm_meta_path).get("suspects")
    if not record or record.get("digest") != file_digest(csv_path):
        return None
    return read_csv(csv_path)
