"""Step 4: train the linear SVM on the training images' DNN features (classifier 'svm' or 'svmDnnRefined').

Features are L2-normalised (svm_boL2Normalize), then LinearSVC(class_weight='balanced') is cross-validated
for each C in svm_CVals with stratified folds of the training split only; the test set plays no part in the
choice. The SVM's margins are then calibrated into probabilities (Platt scaling on out-of-fold margins, again of
the training split only). For 'svmDnnRefined', C is chosen and the calibration fit on the refined network's
validation images (which it did not train on), and the SVM is fit on the images it trained on. Writes svm.npz
(coef, intercept, calibration), svm.json (C, the table of C against accuracy, what it was made from) and
svm_cv_accuracy.png.

With classifier 'svm' (svm_boFindSuspects), it also ranks the training images by how likely their label is wrong:
cleanlab's confident learning on out-of-fold probabilities of the same calibrated SVM, into suspects.csv (most
suspicious first), with feature_map.png (t-SNE of the training images, suspects ringed). svm_boExcludeSuspects
fits the SVM again without the images cleanlab calls label issues; the test set stays as it is.
"""
import numpy as np

import PARAMETERS

from libraries import feature_map, featurize, label_issues, layout, model_io, plots, provenance, settings, svm
from libraries.artifacts import file_digest, load_json, save_figure
from libraries.errors import DatasetError
from libraries.tracking import Tracker


def main():
    P, _ = settings.parse(PARAMETERS, description=__doc__)
    params, paths = vars(P), layout.dataset_paths(P)
    if P.classifier == "dnn":
        print("classifier='dnn': the refined DNN classifies by itself; no SVM to train")
        return
    provenance.check_chain(paths, params, upto="svm")
    data = featurize.load_features(paths.features, paths.feature_shards)
    labels = load_json(paths.split)["labels"]
    if P.classifier == "svmDnnRefined":  # C and calibration on images the refined network did not train on
        train = data["subset"] == "train"
        held_out = train & np.isin(data["paths"], model_io.load_meta(paths.model_meta)["validation"])
        model, table = svm.train_on_held_out(data["features"], data["labels"], train & ~held_out, held_out, len(labels),
                                             P.svm_CVals, l2=P.svm_boL2Normalize, random_state=P.randomSeed, progress=True)
    else:
        model, table = svm.train(data["features"], data["labels"], data["subset"], len(labels), P.svm_CVals,
                                 folds=P.svm_cvFolds, l2=P.svm_boL2Normalize, random_state=P.randomSeed, progress=True)
    print_table(model, table, labels)
    for stale in (paths.suspects, paths.feature_map_plot):  # never shown beside an SVM they were not made with
        stale.unlink(missing_ok=True)
    suspects, skipped = find_suspects(P, data, labels, model["C"])
    if suspects and P.svm_boExcludeSuspects:
        excluded = [r["path"] for r in suspects if r["label_issue"]]
        subset = np.where(np.isin(data["paths"], excluded), "excluded", data["subset"])
        model, table = svm.train(data["features"], data["labels"], subset, len(labels), P.svm_CVals,
                                 folds=P.svm_cvFolds, l2=P.svm_boL2Normalize, random_state=P.randomSeed, progress=True)
        model["excluded_suspects"] = len(excluded)
        print(f"svm_boExcludeSuspects: fit again without the {len(excluded)} training images cleanlab calls label issues")
        print_table(model, table, labels)

    record = {"skipped": skipped} if skipped else None
    if suspects:
        label_issues.write_csv(paths.suspects, suspects)
        record = {**label_issues.summary(suspects), "file": paths.suspects.name, "digest": file_digest(paths.suspects)}
        train = data["subset"] == "train"
        ringed = np.isin(data["paths"][train], [r["path"] for r in suspects if r["label_issue"]])
        save_figure(paths.feature_map_plot, plots.feature_map(feature_map.embed(data["features"][train], P.randomSeed),
                                                              data["labels"][train], labels, ringed))
        print(f"wrote {paths.suspects} and {paths.feature_map_plot}")
    svm.save(paths.svm, paths.svm_meta, model, table, P.svm_boL2Normalize, labels,
             provenance.record("svm", params, paths), suspects=record)
    save_figure(paths.svm_plot, plots.svm_cv_accuracy(table, model["C"]))
    provenance.record_time(paths, "svm", settings.seconds_so_far())
    print(f"fit the SVM on {model['num_train_images']} training images and calibrated its margins into probabilities "
          f"(Platt scaling, on {model['chosen_on']})")
    print(f"wrote {paths.svm}, {paths.svm_meta} and {paths.svm_plot}")
    with Tracker.for_script(P, paths, "4_trainSVM") as tracker:
        tracker.log_metrics({f"svm_cv_accuracy_C_{row['C']:g}": row["cv_accuracy"] for row in table})
        tracker.log_metrics({"svm_C": model["C"], "svm_cv_accuracy": max(row["cv_accuracy"] for row in table)})
        if suspects:
            tracker.log_metrics({"label_issues": record["label_issues"], "excluded_suspects": model.get("excluded_suspects", 0)})
            tracker.log_artifacts(paths.suspects, paths.feature_map_plot)
        tracker.log_artifacts(paths.svm_plot, paths.svm_meta)


def print_table(model: dict, table: list[dict], labels: list[str]) -> None:
    for k in model["left_out"]:
        print(f"warning: class {labels[k]!r} has fewer than {svm.MIN_IMAGES_PER_CLASS} training images, too few to "
              f"cross-validate and calibrate: it is left out of the SVM and never predicted; add images to it")
    print(f"{'C':>10}  {'accuracy':>12}  (on {model['chosen_on']})")
    for row in table:
        mark = "  <- chosen" if row["C"] == model["C"] else ""
        print(f"{row['C']:>10g}  {100 * row['cv_accuracy']:>9.2f} % ± {100 * row['cv_std']:.2f}{mark}")
    values = [row["C"] for row in table]
    if len(values) > 1 and model["C"] in (min(values), max(values)):
        ties = sum(abs(row["cv_accuracy"] - max(r["cv_accuracy"] for r in table)) < 1e-12 for row in table)
        print(f"note: the chosen C ({model['C']:g}) is the {'smallest' if model['C'] == min(values) else 'largest'} "
              f"value in svm_CVals" + (f" ({ties} values tie; the smallest of them is taken)" if ties > 1 else "")
              + ": a wider grid that way may find a better one")


def find_suspects(P, data: dict, labels: list[str], c: float) -> tuple[list[dict] | None, str | None]:
    """(suspects.csv's rows for the training images, None), or (None, why not) with a message when they cannot be
    found, or (None, None) when not asked for."""
    if not (P.svm_boFindSuspects or P.svm_boExcludeSuspects):
        return None, None
    if P.classifier != "svm":
        print(f"label suspects: not searched with classifier={P.classifier!r}, whose network has learnt the training "
              f"labels, wrong ones included; run scripts 3-4 with --set classifier=svm to find them")
        return None, None
    train = data["subset"] == "train"
    try:
        suspects = label_issues.find(data["features"][train], data["labels"][train], list(data["paths"][train]), labels,
                                     c, folds=P.svm_cvFolds, l2=P.svm_boL2Normalize, random_state=P.randomSeed)
    except DatasetError as err:
        print(f"label suspects skipped: {err}")
        return None, str(err)
    issues = [r for r in suspects if r["label_issue"]]
    shown = issues[:10]
    print(f"label suspects: cleanlab calls {len(issues)} of the {len(suspects)} training images label issues"
          + (f"; the {len(shown)} most suspicious{' of them' if len(issues) > len(shown) else ''}:" if issues else ""))
    for r in shown:
        print(f"  {r['path']}: given {r['given_label']!r}, looks like {r['suggested_label']!r} (quality {r['quality']:.3f})")
    if len(issues) > len(shown):
        print(f"  ... and {len(issues) - len(shown)} more: all training images are ranked in suspects.csv")
    return suspects, None


if __name__ == "__main__":
    settings.run(main)
