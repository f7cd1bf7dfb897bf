"""Step 4: train the linear SVM on the training images' DNN features (classifier 'svm' or 'svmDnnRefined').

Features are L2-normalised (svm_boL2Normalize), then LinearSVC(class_weight='balanced') is cross-validated
for each C in svm_CVals with stratified folds of the training split only; the test set plays no part in the
choice. The SVM's margins are then calibrated into probabilities (Platt scaling on out-of-fold margins, again of
the training split only). For 'svmDnnRefined', C is chosen and the calibration fit on the refined network's
validation images (which it did not train on), and the SVM is fit on the images it trained on. Writes svm.npz
(coef, intercept, calibration), svm.json (C, the table of C against accuracy, what it was made from) and
svm_cv_accuracy.png.
"""
import numpy as np

import PARAMETERS

from libraries import layout, model_io, plots, provenance, settings, svm
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
    if P.classifier == "svmDnnRefined":  # C and calibration on images the refined network did not train on
        train = data["subset"] == "train"
        held_out = train & np.isin(data["paths"], model_io.load_meta(paths.model_meta)["validation"])
        model, table = svm.train_on_held_out(data["features"], data["labels"], train & ~held_out, held_out, len(labels),
                                             P.svm_CVals, l2=P.svm_boL2Normalize, random_state=P.randomSeed, progress=True)
    else:
        model, table = svm.train(data["features"], data["labels"], data["subset"], len(labels), P.svm_CVals,
                                 folds=P.svm_cvFolds, l2=P.svm_boL2Normalize, random_state=P.randomSeed, progress=True)
    for k in model["left_out"]:
        print(f"warning: class {labels[k]!r} has fewer than {svm.MIN_IMAGES_PER_CLASS} training images, too few to "
              f"cross-validate and calibrate: it is left out of the SVM and never predicted; add images to it")
    print(f"{'C':>10}  {'accuracy':>12}  (on {model['chosen_on']})")
    for row in table:
        mark = "  <- chosen" if row["C"] == model["C"] else ""
        print(f"{row['C']:>10g}  {100 * row['cv_accuracy']:>9.2f} % ± {100 * row['cv_std']:.2f}{mark}")

    svm.save(paths.svm, paths.svm_meta, model, table, P.svm_boL2Normalize, labels,
             provenance.record("svm", params, paths))
    save_figure(paths.svm_plot, plots.svm_cv_accuracy(table, model["C"]))
    print(f"fit the SVM on {model['num_train_images']} training images and calibrated its margins into probabilities "
          f"(Platt scaling, on {model['chosen_on']})")
    print(f"wrote {paths.svm}, {paths.svm_meta} and {paths.svm_plot}")
    with Tracker.for_script(P, paths, "4_trainSVM") as tracker:
        tracker.log_metrics({f"svm_cv_accuracy_C_{row['C']:g}": row["cv_accuracy"] for row in table})
        tracker.log_metrics({"svm_C": model["C"], "svm_cv_accuracy": max(row["cv_accuracy"] for row in table)})
        tracker.log_artifacts(paths.svm_plot, paths.svm_meta)


if __name__ == "__main__":
    settings.run(main)
