"""The linear SVM on DNN features: C chosen by stratified cross-validation on the training split only, Platt
calibration fit on out-of-fold margins of the training split only, and the result kept as plain arrays (coef,
intercept, calibration a and b) that ``scoring.ScoreHead`` turns into probabilities."""
from __future__ import annotations

import contextlib
import warnings
from pathlib import Path

import numpy as np
from sklearn.calibration import CalibratedClassifierCV
from sklearn.exceptions import ConvergenceWarning
from sklearn.frozen import FrozenEstimator
from sklearn.model_selection import StratifiedKFold, cross_val_predict, cross_val_score
from sklearn.svm import LinearSVC
from tqdm.auto import tqdm

from .artifacts import file_digest, load_json, load_npz, save_json, save_npz
from .errors import DatasetError, StaleArtifact
from .layout import SCRIPTS

ARRAYS = ("coef", "intercept", "cal_a", "cal_b")
ABSENT_CLASS_B = 50.0  # calibration offset of a class without training images: sigmoid(-50) ~ 2e-22, it never wins


def l2_normalize(features: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return (features / np.maximum(norms, 1e-12)).astype(np.float32)


def cv_folds(labels: np.ndarray, requested: int) -> int:
    """As many folds as asked for, but no more than the smallest class has members (and at least 2)."""
    return max(2, min(requested, int(np.bincount(labels)[np.unique(labels)].min())))


def _splitter(labels: np.ndarray, folds: int, random_state: int) -> StratifiedKFold:
    return StratifiedKFold(n_splits=cv_folds(labels, folds), shuffle=True, random_state=random_state)


@contextlib.contextmanager
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.filterwarnings("ignore", message="The least populated class")
        yield


def select_c(features: np.ndarray, labels: np.ndarray, c_values: list[float], folds: int = 5,
             random_state: int = 0, progress: bool = False) -> list[dict]:
    """Cross-validated accuracy (mean and std over stratified folds) of ``LinearSVC(class_weight='balanced')``
    for each C, on the given (training) features only."""
    splitter = _splitter(labels, folds, random_state)
    table = []
    with _quiet():
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


def fit(features: np.ndarray, labels: np.ndarray, c: float, num_classes: int, folds: int = 5,
        random_state: int = 0) -> dict:
    """Fit the SVM on all given features, and its Platt calibration on out-of-fold margins of the same features
    (scikit-learn's ``CalibratedClassifierCV(method='sigmoid', ensemble=False)``).

    Returns {'coef': (K, D), 'intercept': (K,), 'cal_a': (K,), 'cal_b': (K,), 'C': c}, one row per class, such that
    ``scoring.ScoreHead`` gives exactly ``CalibratedClassifierCV.predict_proba``. A binary SVM has one margin ``m``;
    it is kept as two opposite rows (-m, m) with mirrored calibrations, which makes the same formula exact for two
    classes as for many. A class without training images gets probability ~0.
    """
    with _quiet():
        calibrated = CalibratedClassifierCV(make_svm(c, random_state), method="sigmoid", ensemble=False,
                                            cv=_splitter(labels, folds, random_state)).fit(features, labels)
    return _as_arrays(calibrated, num_classes, features.shape[1], c)


def out_of_fold_probabilities(features: np.ndarray, labels: np.ndarray, c: float, num_classes: int, folds: int = 5,
                              random_state: int = 0) -> np.ndarray:
    """(N, num_classes) calibrated probabilities of each row from the model ``fit`` makes (same C, same Platt
    calibration) on the other folds: stratified ``folds``-fold ``cross_val_predict``, so no row is scored by a
    model that saw it. What confident learning needs to find label errors."""
    outer = _splitter(labels, folds, random_state)
    smallest = int(np.bincount(labels)[np.unique(labels)].min())
    inner = max(2, min(folds, smallest - -(-smallest // outer.n_splits)))  # what the smallest class keeps per fold
    with _quiet():
        model = CalibratedClassifierCV(make_svm(c, random_state), method="sigmoid", ensemble=False,
                                       cv=StratifiedKFold(n_splits=inner, shuffle=True, random_state=random_state))
        probabilities = cross_val_predict(model, features, labels, cv=outer, method="predict_proba")
    full = np.zeros((len(labels), num_classes), np.float32)
    full[:, np.unique(labels)] = probabilities
    return full


def _as_arrays(calibrated: CalibratedClassifierCV, num_classes: int, dim: int, c: float) -> dict:
    """The fitted SVM and its sigmoids as one row per class (see ``fit``)."""
    fitted = calibrated.calibrated_classifiers_[0]
    svm, calibrators = fitted.estimator, fitted.calibrators
    svm = getattr(svm, "estimator", svm)  # a FrozenEstimator wraps the SVM it calibrates
    coef, intercept = svm.coef_.astype(np.float32), svm.intercept_.astype(np.float32)
    a = np.array([cal.a_ for cal in calibrators], np.float32)
    b = np.array([cal.b_ for cal in calibrators], np.float32)
    if len(svm.classes_) == 2:
        coef, intercept = np.concatenate([-coef, coef]), np.concatenate([-intercept, intercept])
        a, b = np.concatenate([a, a]), np.concatenate([-b, b])
    present = svm.classes_
    full = {"coef": np.zeros((num_classes, dim), np.float32), "intercept": np.zeros(num_classes, np.float32),
            "cal_a": np.zeros(num_classes, np.float32), "cal_b": np.full(num_classes, ABSENT_CLASS_B, np.float32)}
    full["coef"][present], full["intercept"][present] = coef, intercept
    full["cal_a"][present], full["cal_b"][present] = a, b
    return {**full, "C": float(c)}


MIN_IMAGES_PER_CLASS = 2  # fewer training images cannot be cross-validated or calibrated


def train(features: np.ndarray, labels: np.ndarray, subset: np.ndarray, num_classes: int, c_values: list[float],
          folds: int = 5, l2: bool = True, random_state: int = 0, progress: bool = False) -> tuple[dict, list[dict]]:
    """Everything script 4 computes, from the training rows (``subset == 'train'``) alone: the CV table over
    ``c_values``, and the calibrated SVM fit with the best C. Returns (model, table); ``model['left_out']`` lists
    the class ids with fewer than ``MIN_IMAGES_PER_CLASS`` training images, which get probability ~0, and
    ``model['num_train_images']`` and ``model['folds']`` say how many images and folds were used."""
    train_rows = np.asarray(subset) == "train"
    x, y = features[train_rows], np.asarray(labels)[train_rows]
    counts = np.bincount(y, minlength=num_classes)
    left_out = [k for k in range(num_classes) if 0 < counts[k] < MIN_IMAGES_PER_CLASS]
    usable = np.isin(y, np.flatnonzero(counts >= MIN_IMAGES_PER_CLASS))
    x, y = x[usable], y[usable]
    if len(np.unique(y)) < 2:
        raise DatasetError(f"fewer than two classes have at least {MIN_IMAGES_PER_CLASS} training images: "
                           f"a classifier needs two")
    if l2:
        x = l2_normalize(x)
    table = select_c(x, y, c_values, folds=folds, random_state=random_state, progress=progress)
    model = fit(x, y, best_c(table), num_classes, folds=folds, random_state=random_state)
    return {**model, "left_out": left_out, "num_train_images": int(len(y)), "folds": cv_folds(y, folds),
            "chosen_on": f"stratified {cv_folds(y, folds)}-fold cross-validation on the training split"}, table


def train_on_held_out(features: np.ndarray, labels: np.ndarray, fit_rows: np.ndarray, held_out_rows: np.ndarray,
                      num_classes: int, c_values: list[float], l2: bool = True, random_state: int = 0,
                      progress: bool = False) -> tuple[dict, list[dict]]:
    """For features of a network that was refined on some images (``fit_rows``) and not on others
    (``held_out_rows``, its validation images): the SVM is fit on ``fit_rows``, while C is chosen by its accuracy on
    ``held_out_rows`` and the Platt calibration is fit on its margins there, so that neither C nor the
    probabilities are judged on images the network has already learnt. Returns (model, table) as ``train`` does."""
    labels = np.asarray(labels)
    x, y = features[fit_rows], labels[fit_rows]
    x_held, y_held = features[held_out_rows], labels[held_out_rows]
    held_counts = np.bincount(y_held, minlength=num_classes)[np.unique(y)]
    if len(np.unique(y)) < 2 or held_counts.min() < MIN_IMAGES_PER_CLASS:
        raise DatasetError(f"choosing C and calibrating on the refined network's validation images needs at least "
                           f"{MIN_IMAGES_PER_CLASS} of them in every class (the fewest now: {held_counts.min()}): raise "
                           f"rf_valFraction or add images, then rerun from scripts/2_refineDNN.py")
    if l2:
        x, x_held = l2_normalize(x), l2_normalize(x_held)
    table = []
    with _quiet():
        for c in tqdm(c_values, desc="C on validation images", unit="C", disable=not progress, leave=False):
            accuracy = float((make_svm(c, random_state).fit(x, y).predict(x_held) == y_held).mean())
            table.append({"C": float(c), "cv_accuracy": accuracy, "cv_std": 0.0})
        c = best_c(table)
        # the SVM is frozen, so the folds only pass every held-out image through it once
        folds = _splitter(y_held, MIN_IMAGES_PER_CLASS, random_state)
        frozen = FrozenEstimator(make_svm(c, random_state).fit(x, y))
        calibrated = CalibratedClassifierCV(frozen, method="sigmoid", cv=folds).fit(x_held, y_held)
    model = _as_arrays(calibrated, num_classes, x.shape[1], c)
    return {**model, "left_out": [], "num_train_images": int(len(y)), "num_held_out_images": int(len(y_held)),
            "folds": None, "chosen_on": f"the {len(y_held)} validation images the refined network did not train on"}, table


def save(npz_path: Path, json_path: Path, model: dict, table: list[dict], l2: bool, labels: list[str],
         provenance: dict, suspects: dict | None = None) -> None:
    """The arrays to ``svm.npz``, then the metadata (C, the CV table, provenance, and the digest of ``svm.npz``) to
    ``svm.json``: written last, so a half-finished save is never trusted."""
    save_npz(npz_path, **{k: model[k] for k in ARRAYS})
    save_json(json_path, {"C": model["C"], "l2_normalize": l2, "calibration": "sigmoid (Platt)", "chosen_on": model["chosen_on"],
                          "labels": list(labels), "cv_table": table, "num_train_images": model["num_train_images"],
                          "cv_folds": model["folds"], "num_held_out_images": model.get("num_held_out_images"),
                          "left_out": [labels[k] for k in model["left_out"]],
                          "excluded_suspects": model.get("excluded_suspects", 0), "suspects": suspects,
                          "arrays_file": Path(npz_path).name, "arrays_digest": file_digest(npz_path),
                          "provenance": provenance})


def load(npz_path: Path, json_path: Path) -> tuple[dict, dict]:
    """(arrays, metadata) of a saved SVM, refused unless ``svm.npz`` is the file ``svm.json`` was written with."""
    meta = load_json(json_path)
    if not Path(npz_path).is_file() or meta.get("arrays_digest") != file_digest(npz_path):
        raise StaleArtifact(f"{npz_path} is missing or is not the file {Path(json_path).name} was written with: "
                            f"rerun {SCRIPTS['svm']}")
    return load_npz(npz_path), meta
