"""Scoring a classifier on the test set: the numbers of ``metrics.json`` (see DESIGN.md section 3)."""
from __future__ import annotations

import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support, roc_auc_score
from sklearn.preprocessing import label_binarize


def per_class_auc(y_true: np.ndarray, scores: np.ndarray, labels: list[str]) -> dict[str, float | None]:
    """One-vs-rest AUC of each class; None for a class with no positive or no negative test image."""
    onehot = label_binarize(y_true, classes=np.arange(len(labels)))
    if len(labels) == 2 and onehot.shape[1] == 1:
        onehot = np.hstack([1 - onehot, onehot])
    aucs = {}
    for k, label in enumerate(labels):
        positives = onehot[:, k].sum()
        aucs[label] = float(roc_auc_score(onehot[:, k], scores[:, k])) if 0 < positives < len(y_true) else None
    return aucs


def compute_metrics(y_true: np.ndarray, scores: np.ndarray, labels: list[str], classifier: str) -> dict:
    """Per-class, overall and class-averaged accuracy (the per-class accuracy is the class's recall); precision,
    recall and F1; per-class, micro and macro AUC; the confusion matrix. ``scores`` is (N, K) (the probabilities),
    the prediction is its row-wise argmax."""
    y_true = np.asarray(y_true)
    y_pred = scores.argmax(axis=1)
    classes = np.arange(len(labels))
    cm = confusion_matrix(y_true, y_pred, labels=classes)
    support = cm.sum(axis=1)
    per_class = {label: (float(cm[k, k] / support[k]) if support[k] else None) for k, label in enumerate(labels)}
    present = [v for v in per_class.values() if v is not None]
    precision, recall, f1, _ = precision_recall_fscore_support(y_true, y_pred, labels=classes, zero_division=np.nan)
    undefined = lambda values: [None if np.isnan(v) else float(v) for v in values]  # noqa: E731 - 0/0 is n/a, not 0%
    aucs = per_class_auc(y_true, scores, labels)
    valid = [v for v in aucs.values() if v is not None]
    onehot = np.eye(len(labels))[y_true]
    micro = float(roc_auc_score(onehot.ravel(), scores.ravel())) if 0 < onehot.sum() < onehot.size else None
    return {
        "classifier": classifier,
        "labels": list(labels),
        "num_test_images": int(len(y_true)),
        "overall_accuracy": float((y_pred == y_true).mean()) if len(y_true) else None,
        "class_averaged_accuracy": float(np.mean(present)) if present else None,
        "per_class_accuracy": per_class,
        "precision": dict(zip(labels, undefined(precision))),  # None: the class was never predicted
        "recall": dict(zip(labels, undefined(recall))),  # None: the class has no test image
        "f1": dict(zip(labels, undefined(f1))),
        "support": dict(zip(labels, map(int, support))),
        "auc": aucs,
        "macro_auc": float(np.mean(valid)) if valid else None,
        "micro_auc": micro,
        "confusion_matrix": cm.tolist(),
    }


def report(metrics: dict) -> str:
    """The printed table: per class accuracy, precision, recall, F1, AUC; then the overall figures."""
    fmt = lambda v: "   n/a" if v is None else f"{100 * v:6.2f}"  # noqa: E731
    labels = metrics["labels"]
    width = max(10, *(len(l) for l in labels))
    lines = [f"{'class':<{width}}  {'n':>5}  {'acc %':>6}  {'prec %':>6}  {'rec %':>6}  {'F1 %':>6}  {'AUC %':>6}"]
    for label in labels:
        lines.append(f"{label:<{width}}  {metrics['support'][label]:>5}  {fmt(metrics['per_class_accuracy'][label])}  "
                     f"{fmt(metrics['precision'][label])}  {fmt(metrics['recall'][label])}  {fmt(metrics['f1'][label])}  "
                     f"{fmt(metrics['auc'][label])}")
    lines += [
        f"classifier: {metrics['classifier']}, {metrics['num_test_images']} test images",
        f"overall accuracy:        {fmt(metrics['overall_accuracy'])} %",
        f"class-averaged accuracy: {fmt(metrics['class_averaged_accuracy'])} %",
        f"macro AUC: {fmt(metrics['macro_auc'])} %, micro AUC: {fmt(metrics['micro_auc'])} %",
    ]
    return "\n".join(lines)
