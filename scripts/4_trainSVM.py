"""Step 4: train the linear SVM on the training images' DNN features (classifier 'svm' or 'svmDnnRefined').

Features are L2-normalised (svm_boL2Normalize), then LinearSVC(class_weight='balanced') is cross-validated
for each C in svm_CVals with stratified folds of the training split only; the test set plays no part in the
choice. Writes svm.npz (coef, intercept), svm.json (C, the table of C against CV accuracy) and svm_cv_accuracy.png.
"""
import numpy as np

import PARAMETERS
from libraries import plots, settings, svm
from libraries.artifacts import load_json, load_npz, save_figure, save_json, save_npz
from libraries.tracking import Tracker

P, _ = settings.parse(PARAMETERS, description=__doc__)
paths = settings.dataset_paths(P)


def main():
    if P.classifier == "dnn":
        print("classifier='dnn': the refined DNN classifies by itself; no SVM to train")
        return
    if not paths.features.is_file():
        raise FileNotFoundError(f"{paths.features} does not exist: run scripts/3_runDNN.py first")
    data = load_npz(paths.features)
    labels = load_json(paths.split)["labels"]
    train = data["subset"] == "train"
    x, y = data["features"][train], data["labels"][train]
    if len(np.unique(y)) < 2:
        raise settings.UserError("the training features hold fewer than two classes: rerun scripts 1 and 3")
    if P.svm_boL2Normalize:
        x = svm.l2_normalize(x)

    table = svm.select_c(x, y, P.svm_CVals, folds=P.svm_cvFolds, random_state=P.randomSeed, progress=True)
    chosen = svm.best_c(table)
    print(f"{'C':>10}  {'CV accuracy':>12}  (stratified {svm.cv_folds(y, P.svm_cvFolds)}-fold, training split only)")
    for row in table:
        mark = "  <- chosen" if row["C"] == chosen else ""
        print(f"{row['C']:>10g}  {100 * row['cv_accuracy']:>9.2f} % ± {100 * row['cv_std']:.2f}{mark}")

    model = svm.fit(x, y, chosen, num_classes=len(labels), random_state=P.randomSeed)
    save_npz(paths.svm, coef=model["coef"], intercept=model["intercept"])
    save_json(paths.svm_meta, {"C": chosen, "l2_normalize": P.svm_boL2Normalize, "labels": labels, "cv_table": table,
                               "feature_key": str(data["feature_key"]), "num_train_images": int(len(y))})
    save_figure(paths.svm_plot, plots.svm_cv_accuracy(table, chosen))
    print(f"wrote {paths.svm}, {paths.svm_meta} and {paths.svm_plot}")
    with Tracker.for_script(P, paths, "4_trainSVM") as tracker:
        tracker.log_metrics({f"svm_cv_accuracy_C_{row['C']:g}": row["cv_accuracy"] for row in table})
        tracker.log_metrics({"svm_C": chosen, "svm_cv_accuracy": max(row["cv_accuracy"] for row in table)})
        tracker.log_artifacts(paths.svm_plot, paths.svm_meta)


settings.run(main)
