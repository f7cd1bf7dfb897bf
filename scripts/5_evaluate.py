"""Step 5: score the test images with the chosen classifier, report how well it does, and export it.

Prints per-class accuracy, precision, recall, F1 and AUC, then overall and class-averaged accuracy. Writes
metrics.json, test_scores.npz, roc.png (one-vs-rest ROC with per-class, micro and macro AUC),
confusion_matrix.png and report.html (all of it with the worst mistakes, in one self-contained page); then
the deployable model: model.onnx (uint8 images in, class scores out), labels.json and deploy.json.
"""
import numpy as np

import PARAMETERS
from libraries import evaluation, export, plots, report, settings, svm
from libraries.artifacts import load_json, load_npz, save_figure, save_json, save_npz
from libraries.tracking import Tracker, flatten_numbers

P, _ = settings.parse(PARAMETERS, description=__doc__)
paths = settings.dataset_paths(P)


def main():
    for needed, step in ((paths.features, 3), (paths.model_meta, 2)):
        if not needed.is_file():
            raise FileNotFoundError(f"{needed} does not exist: run scripts/{step}_*.py first")
    data = load_npz(paths.features)
    labels = load_json(paths.split)["labels"]
    test = data["subset"] == "test"
    if not test.any():
        raise settings.UserError("the test set is empty: lower ratioTrainTest or add images, then rerun scripts 1-4")
    x, y = data["features"][test], data["labels"][test]

    if P.classifier == "dnn":
        meta = load_json(paths.model_meta)
        if not meta["refined"]:
            raise settings.UserError("classifier='dnn' needs a refined DNN: run scripts/2_refineDNN.py with classifier='dnn'")
        scores = evaluation.softmax(dnn_logits(x))
    else:
        if not paths.svm.is_file():
            raise FileNotFoundError(f"{paths.svm} does not exist: run scripts/4_trainSVM.py first")
        svm_meta = load_json(paths.svm_meta)
        if svm_meta["feature_key"] != str(data["feature_key"]):
            raise settings.UserError(f"{paths.svm} was trained on other features: rerun scripts/4_trainSVM.py")
        svm_model = load_npz(paths.svm)
        scores = svm.decision_scores(x, svm_model["coef"], svm_model["intercept"], l2=svm_meta["l2_normalize"])

    metrics = evaluation.compute_metrics(y, scores, labels, P.classifier)
    save_json(paths.metrics, metrics)
    save_figure(paths.roc_plot, plots.roc_curves(y, scores, labels, metrics))
    save_figure(paths.confusion_plot, plots.confusion_matrices(np.array(metrics["confusion_matrix"]), labels))
    save_npz(paths.test_scores, paths=data["paths"][test], labels=y, scores=scores.astype(np.float32))
    print(evaluation.report(metrics))
    report.write(paths.proc, paths.images, paths.report)
    print(f"wrote {paths.metrics}, {paths.test_scores}, {paths.roc_plot}, {paths.confusion_plot} and {paths.report}")

    onnx_path = export.export_pipeline_model(paths.proc, P.classifier)
    print(f"exported the deployable model: {onnx_path}, {paths.labels} and {paths.deploy_meta}")
    with Tracker.for_script(P, paths, "5_evaluate") as tracker:
        tracker.log_metrics(flatten_numbers(metrics))
        tracker.log_artifacts(paths.metrics, paths.roc_plot, paths.confusion_plot, paths.report, paths.test_scores,
                              onnx_path, paths.labels, paths.deploy_meta)


def dnn_logits(features):
    """The refined network's own head, applied to its pooled features (dropout is off at inference)."""
    import torch

    state = torch.load(paths.model_weights, map_location="cpu", weights_only=True)
    weight, bias = state["head.weight"].numpy(), state["head.bias"].numpy()
    return features @ weight.T + bias


settings.run(main)
