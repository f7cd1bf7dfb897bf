"""The PNG plots: refinement errors per epoch, SVM accuracy per C, ROC curves and the confusion matrix."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import auc, roc_curve  # noqa: E402


def refine_errors(history: list[dict], kept_epoch: int | None = None):
    """Training and validation error per epoch, with the epoch whose weights were kept."""
    fig, ax = plt.subplots(figsize=(6, 4))
    epochs = [h["epoch"] for h in history]
    # measured on the batches as trained on: augmented, class-balanced, with dropout; so it can lie above validation
    ax.plot(epochs, [100 * h["train_error"] for h in history], "o-", label="training error (augmented batches)")
    if any("val_error" in h for h in history):
        ax.plot(epochs, [100 * h.get("val_error", np.nan) for h in history], "s-", label="validation error")
    if kept_epoch is not None:
        ax.axvline(kept_epoch, color="k", ls="--", lw=1, label=f"kept: epoch {kept_epoch}")
    ax.set(xlabel="epoch", ylabel="error (%)", title="DNN refinement")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


def svm_cv_accuracy(table: list[dict], chosen_c: float):
    fig, ax = plt.subplots(figsize=(6, 4))
    cs = [row["C"] for row in table]
    acc = np.array([100 * row["cv_accuracy"] for row in table])
    std = np.array([100 * row["cv_std"] for row in table])
    ax.errorbar(cs, acc, yerr=std, fmt="o-", capsize=3, label="cross-validated accuracy (training split)")
    ax.axvline(chosen_c, color="k", ls="--", lw=1, label=f"chosen C = {chosen_c:g}")
    ax.set(xscale="log", xlabel="C", ylabel="accuracy (%)", title="Linear SVM: accuracy per C")
    ax.set_ylim(top=min(ax.get_ylim()[1], 100.5))  # an error bar past 100% says nothing
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


def roc_curves(y_true: np.ndarray, scores: np.ndarray, labels: list[str], metrics: dict):
    """One-vs-rest ROC per class with the micro average; for two classes, the one curve of the first class (the
    other class's curve is the same curve mirrored, and its AUC the same)."""
    fig, ax = plt.subplots(figsize=(6, 5))
    onehot = np.eye(len(labels))[y_true]
    if len(labels) == 2 and metrics["auc"][labels[0]] is not None:
        fpr, tpr, _ = roc_curve(onehot[:, 0], scores[:, 0])
        ax.plot(fpr, tpr, lw=1.8, label=f"{labels[0]} vs {labels[1]} (AUC {auc(fpr, tpr):.3f})")
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
        ax.set(xlabel=f"false positive rate ({labels[1]} called {labels[0]})",
               ylabel=f"true positive rate (recall of {labels[0]})", xlim=(0, 1), ylim=(0, 1.02), title="ROC")
        ax.legend(loc="lower right", fontsize=9)
        return fig
    for k, label in enumerate(labels):
        if metrics["auc"][label] is None:
            continue
        fpr, tpr, _ = roc_curve(onehot[:, k], scores[:, k])
        ax.plot(fpr, tpr, lw=1.5, label=f"{label} (AUC {auc(fpr, tpr):.3f})")
    if metrics["micro_auc"] is not None:
        fpr, tpr, _ = roc_curve(onehot.ravel(), scores.ravel())
        ax.plot(fpr, tpr, "k:", lw=2, label=f"micro-average (AUC {metrics['micro_auc']:.3f})")
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
    macro = metrics["macro_auc"]
    ax.set(xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1.02),
           title=f"ROC, one class vs rest (macro AUC {macro:.3f})" if macro is not None else "ROC, one class vs rest")
    ax.legend(loc="lower right", fontsize=8)
    return fig


def confusion_matrices(cm: np.ndarray, labels: list[str]):
    cm = np.asarray(cm)
    normalized = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    size = max(4.0, 0.6 * len(labels) + 2)
    fig, axes = plt.subplots(1, 2, figsize=(2 * size + 1, size))
    for ax, matrix, title, fmt in ((axes[0], cm, "counts", "d"), (axes[1], normalized, "normalised per true class", ".2f")):
        ax.imshow(matrix, cmap="Blues", vmin=0)
        ax.set(xticks=range(len(labels)), yticks=range(len(labels)))
        ax.set_xlabel("predicted", fontsize=12)
        ax.set_ylabel("true", fontsize=12)
        ax.set_title(title, fontsize=13)
        ax.set_xticklabels(labels, rotation=45, ha="right", fontsize=11)
        ax.set_yticklabels(labels, fontsize=11)
        threshold = matrix.max() / 2 if matrix.size else 0
        for i in range(len(labels)):
            for j in range(len(labels)):
                ax.text(j, i, format(matrix[i, j], fmt), ha="center", va="center",
                        color="white" if matrix[i, j] > threshold else "black",
                        fontsize=max(10, 18 - len(labels)))
    fig.tight_layout()
    return fig


def feature_map(points: np.ndarray, label_ids: np.ndarray, labels: list[str], suspect: np.ndarray):
    """The t-SNE map of the training images, one colour per class, the label suspects ringed in black."""
    fig, ax = plt.subplots(figsize=(7, 6))
    colours = plt.get_cmap("tab10" if len(labels) <= 10 else "tab20")
    for k, label in enumerate(labels):
        chosen = label_ids == k
        ax.scatter(points[chosen, 0], points[chosen, 1], s=8, color=colours(k % colours.N), alpha=0.7,
                   label=f"{label} ({int(chosen.sum())})")
    if suspect.any():
        ax.scatter(points[suspect, 0], points[suspect, 1], s=40, facecolors="none", edgecolors="black", lw=1,
                   label=f"label suspects ({int(suspect.sum())})")
    ax.set(xticks=[], yticks=[], title="Training images' features (t-SNE): colour = given class")
    ax.legend(fontsize=8, markerscale=1.5, loc="best")
    fig.tight_layout()
    return fig
