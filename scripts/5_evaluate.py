"""Step 5: score the test images with the chosen classifier, report how well it does, and export it.

Scores are calibrated probabilities that sum to 1 (Platt-scaled SVM margins, or the refined DNN's softmax),
the same numbers the service answers. Prints per-class accuracy, precision, recall, F1 and AUC, then overall and
class-averaged accuracy. Writes metrics.json, test_scores.npz, test_predictions.csv (the columns of
scripts/predict.py, plus the true label), roc.png (one-vs-rest ROC with per-class, micro and macro AUC),
confusion_matrix.png and report.html (all of it with the worst mistakes and the class activation map of each,
in one self-contained page); then the deployable bundle: model.onnx (uint8 images in, probabilities out), labels.json and deploy.json.
"""
import datetime

import numpy as np

import PARAMETERS
from libraries import (evaluation, explain, export, featurize, layout, model_io, plots, predict, provenance, report, results,
                       scoring, settings)
from libraries.artifacts import load_json, save_csv, save_figure
from libraries.errors import DatasetError
from libraries.images import jpeg_thumbnail
from libraries.tracking import Tracker, flatten_numbers


def main():
    P, _ = settings.parse(PARAMETERS, description=__doc__)
    params, paths = vars(P), layout.dataset_paths(P)
    provenance.check_chain(paths, params, upto="evaluation")
    data = featurize.load_features(paths.features, paths.feature_shards)
    labels = load_json(paths.split)["labels"]
    test = data["subset"] == "test"
    if not test.any():
        raise DatasetError("the test set is empty: lower ratioTrainTest or add images, then rerun scripts 1-4")
    x, y = data["features"][test], data["labels"][test]

    probabilities, raw = scoring.score(x, export.load_head(paths, P.classifier))
    model = model_io.load_meta(paths.model_meta)
    metrics = evaluation.compute_metrics(y, probabilities, labels, P.classifier)
    metrics.update({"score": scoring.SCORE_MEANING[P.classifier], "backbone": model["backbone"],
                    "input_size": model["input_size"], "refined": model["refined"], "test_time_augmentation": P.run_tta,
                    "svm_C": None if P.classifier == "dnn" else load_json(paths.svm_meta)["C"],
                    "data_health": report.health_counts(paths, P.classifier),
                    "run": run_header(paths, data, model),
                    "provenance": provenance.record("evaluation", params, paths)})
    metrics = results.save(paths, data["paths"][test], y, probabilities, raw, metrics)
    rows = predict.prediction_rows(data["paths"][test], probabilities, [None] * len(y), labels)
    save_csv(paths.test_predictions, [{**row, "true_label": labels[k]} for row, k in zip(rows, y)],
             predict.columns(labels, then=("true_label",)))
    save_figure(paths.roc_plot, plots.roc_curves(y, probabilities, labels, metrics))
    save_figure(paths.confusion_plot, plots.confusion_matrices(np.array(metrics["confusion_matrix"]), labels))
    print(evaluation.report(metrics))
    health = metrics["data_health"]
    if health:
        print("data health: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in health.items())
              + " (report.html, section Data health)")
    mistakes = report.worst_mistakes(paths)
    explainer = explain.Explainer.from_paths(paths, params)
    maps = explain.overlays(explainer, [paths.images / r["path"] for r in mistakes],
                            [labels.index(r["predicted"]) for r in mistakes])
    report.write(paths, cams={r["path"]: jpeg_thumbnail(m) for r, m in zip(mistakes, maps)})
    print(f"wrote {paths.metrics}, {paths.test_scores}, {paths.test_predictions}, {paths.roc_plot}, {paths.confusion_plot} "
          f"and {paths.report}")

    onnx_path = export.export_pipeline_model(paths, params)
    print(f"exported the deployable bundle: {onnx_path}, {paths.labels} and {paths.deploy_meta}")
    with Tracker.for_script(P, paths, "5_evaluate") as tracker:
        tracker.log_metrics(flatten_numbers({k: v for k, v in metrics.items() if k != "provenance"}))
        tracker.log_artifacts(paths.metrics, paths.roc_plot, paths.confusion_plot, paths.report, paths.test_scores,
                              onnx_path, paths.labels, paths.deploy_meta)


def run_header(paths, data: dict, model: dict) -> dict:
    """When, from which code and on how many images this evaluation was made (the report's header)."""
    validation = len(model.get("validation") or [])
    return {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "code_version": provenance.code_version(),
            "images": {"train": int((data["subset"] == "train").sum()) - validation, "validation": validation,
                       "test": int((data["subset"] == "test").sum())},
            "step_seconds": provenance.step_times(paths)}


if __name__ == "__main__":
    settings.run(main)
