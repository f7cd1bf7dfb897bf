"""Step 4: train the linear SVM on the training images' DNN features (classifier 'svm' or 'svmDnnRefined').

Features are L2-normalised (svm_boL2Normalize), then LinearSVC(class_weight='balanced') is cross-validated
for each C in svm_CVals with stratified folds of the training split only; the test set plays no part in the
choice. The SVM's margins are then calibrated into probabilities (Platt scaling on out-of-fold margins, again of
the training split only). Writes svm.npz (coef, intercept, calibration), svm.json (C, the table of C against CV
accuracy, what it was made from) and svm_cv_accuracy.png.
"""
import PARAMETERS
from libraries import layout, plots, provenance, settings, svm
from libraries.artifacts import load_json, load_npz, save_figure
from libraries.tracking import Tracker


def main():
    P, _ = settings.parse(PARAMETERS, description=__doc__)
    params, paths = vars(P), layout.dataset_paths(P)
    if P.classifier == "dnn":
        print("classifier='dnn': the refined DNN classifies by itself; no SVM to train")
        return
    provenance.check_chain(paths, params, upto="svm")
    data = load_npz(paths.features)
    labels = load_json(paths.split)["labels"]
    model, table = svm.train(data["features"], data["labels"], data["subset"], len(labels), P.svm_CVals,
                             folds=P.svm_cvFolds, l2=P.svm_boL2Normalize, random_state=P.randomSeed, progress=True)
    for k in model["left_out"]:
        print(f"warning: class {labels[k]!r} has fewer than {svm.MIN_IMAGES_PER_CLASS} training images, too few to "
              f"cross-validate and calibrate: it is left out of the SVM and never predicted; add images to it")
    print(f"{'C':>10}  {'CV accuracy':>12}  (stratified {model['folds']}-fold, training split only)")
    for row in table:
        mark = "  <- chosen" if row["C"] == model["C"] else ""
        print(f"{row['C']:>10g}  {100 * row['cv_accuracy']:>9.2f} % ± {100 * row['cv_std']:.2f}{mark}")

    svm.save(paths.svm, paths.svm_meta, model, table, P.svm_boL2Normalize, labels,
             provenance.record("svm", params, paths))
    save_figure(paths.svm_plot, plots.svm_cv_accuracy(table, model["C"]))
    print(f"calibrated the SVM's margins into probabilities (Platt scaling, out-of-fold on the {model['num_train_images']} training images)")
    print(f"wrote {paths.svm}, {paths.svm_meta} and {paths.svm_plot}")
    with Tracker.for_script(P, paths, "4_trainSVM") as tracker:
        tracker.log_metrics({f"svm_cv_accuracy_C_{row['C']:g}": row["cv_accuracy"] for row in table})
        tracker.log_metrics({"svm_C": model["C"], "svm_cv_accuracy": max(row["cv_accuracy"] for row in table)})
        tracker.log_artifacts(paths.svm_plot, paths.svm_meta)


if __name__ == "__main__":
    settings.run(main)
