"""The linear SVM on DNN features: C chosen by stratified cross-validation on the training split only, and
the chosen model kept as plain arrays (coef, intercept) that score with one matrix product."""
from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.svm import LinearSVC
from tqdm.auto import tqdm


def l2_normalize(features: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return (features / np.maximum(norms, 1e-12)).astype(np.float32)


def cv_folds(labels: np.ndarray, requested: int) -> int:
    """As many folds as asked for, but no more than the smallest class has members (and at least 2)."""
    return max(2, min(requested, int(np.bincount(labels).min())))


def select_c(features: np.ndarray, labels: np.ndarray, c_values: list[float], folds: int = 5,
             random_state: int = 0, progress: bool = False) -> list[dict]:
    """Cross-validated accuracy (mean and std over stratified folds) of ``LinearSVC(class_weight='balanced')``
    for each C, on the given (training) features only."""
    splitter = StratifiedKFold(n_splits=cv_folds(labels, folds), shuffle=True, random_state=random_state)
    table = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.filterwarnings("ignore", message="The least populated class")
        for c in tqdm(c_values, desc="cross-validating C", unit="C", disable=not progress, leave=False):
            scores = cross_val_score(make_svm(c, random_state), features, labels, cv=splitter, scoring="accuracy")
            table.append({"C": float(c), "cv_accuracy": float(scores.mean()), "cv_std": float(scores.std())})
    return table


def best_c(table: list[dict]) -> float:
    """The C of highest CV accuracy; on a tie, the smallest C (the simplest model)."""
    best = max(row["cv_accuracy"] for row in table)
    return min(row["C"] for row in table if row["cv_accuracy"] >= best - 1e-12)


def make_svm(c: float, random_state: int = 0) -> LinearSVC:
    return LinearSVC(C=c, class_weight="balanced", max_iter=20000, random_state=random_state)


def fit(features: np.ndarray, labels: np.ndarray, c: float, num_classes: int, random_state: int = 0) -> dict:
    """Fit on all training features; return {'coef': (K, D), 'intercept': (K,), 'C': c}, one row per class.

    A binary LinearSVC has one decision function; it is kept as two opposite rows so that scoring is the
    same for two classes as for many.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        svm = make_svm(c, random_state).fit(features, labels)
    coef, intercept = svm.coef_.astype(np.float32), svm.intercept_.astype(np.float32)
    if len(svm.classes_) == 2:
        coef, intercept = np.concatenate([-coef, coef]), np.concatenate([-intercept, intercept])
    full_coef = np.zeros((num_classes, features.shape[1]), np.float32)
    full_intercept = np.full(num_classes, -1e3, np.float32)  # a class without training data never wins
    full_coef[svm.classes_], full_intercept[svm.classes_] = coef, intercept
    return {"coef": full_coef, "intercept": full_intercept, "C": float(c)}


def decision_scores(features: np.ndarray, coef: np.ndarray, intercept: np.ndarray, l2: bool = True) -> np.ndarray:
    """(N, K) SVM scores: the predicted class is the argmax of each row."""
    x = l2_normalize(features) if l2 else features.astype(np.float32)
    return x @ coef.T + intercept
