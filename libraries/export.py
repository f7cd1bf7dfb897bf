"""The deployable model: the pipeline's DNN and its ``scoring.ScoreHead`` in one torch module, exported as a bundle.

- svm / svmDnnRefined: backbone -> pool -> L2-normalise -> SVM margins -> Platt calibration -> probabilities.
- dnn: the refined network's head -> softmax.
With test-time augmentation (run_tta), the features are the mean over the views, inside the graph.
Script 5 evaluates with the very same ``ScoreHead`` on cached features, so served probabilities equal evaluated ones.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from . import bundle, provenance, scoring, svm
from .artifacts import load_json
from .backbones import Classifier, FeatureExtractor
from .layout import DatasetPaths
from .model_io import load_model


class DeployedModel(nn.Module):
    """uint8 images -> (probabilities, raw scores), exactly as script 5 scores the test set."""

    def __init__(self, classifier: Classifier, head: scoring.ScoreHead, tta: str = "none"):
        super().__init__()
        self.features, self.head = FeatureExtractor(classifier.eval(), tta), head.eval()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.head(self.features(x))


def load_head(paths: DatasetPaths, classifier: str, model: Classifier | None = None) -> scoring.ScoreHead:
    """The ScoreHead of ``classifier`` from the artifacts in ``paths`` (the refined head, or the calibrated SVM)."""
    if classifier == "dnn":
        model = model if model is not None else load_model(paths.model_meta)[0]
        return scoring.dnn_head(model.head)
    trained, meta = svm.load(paths.svm, paths.svm_meta)
    return scoring.svm_head(trained, meta["l2_normalize"])


def export_pipeline_model(paths: DatasetPaths, params: dict) -> Path:
    """Export what scripts 2-4 trained for ``params['classifier']`` as the bundle in ``paths.bundle``, after
    checking that every artifact it is made from is current; return the ONNX path."""
    classifier = params["classifier"]
    provenance.check_chain(paths, params, upto="evaluation")
    model, meta = load_model(paths.model_meta)
    head = load_head(paths, classifier, model)
    labels = load_json(paths.split)["labels"]
    made_from = provenance.record("evaluation", params, paths)
    tta = params.get("run_tta", "none")
    return bundle.write(paths.bundle, DeployedModel(model, head, tta), labels, meta["input_size"], {
        "classifier": classifier, "test_time_augmentation": tta, "score": scoring.SCORE_MEANING[classifier],
        "raw_score": scoring.RAW_SCORE_MEANING[classifier], "backbone": meta["backbone"],
        "provenance": {**made_from, "step": "bundle"}})
