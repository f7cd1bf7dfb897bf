"""The deployable model: one ONNX graph from uint8 images to class scores, plus ``labels.json`` and ``deploy.json``.

- svm / svmDnnRefined: backbone -> pool -> L2-normalise -> linear layer holding the SVM's coef and intercept;
  the scores are SVM decision values.
- dnn: the refined network with a softmax; the scores are probabilities.
The input is a (batch, size, size, 3) uint8 RGB batch, resized by ``presets.eval_preprocess``; normalisation is
inside the graph. The batch axis is dynamic.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from .artifacts import load_json, load_npz, save_json
from .backbones import Classifier
from .featurize import export_onnx

SCORE_KINDS = {"dnn": "probability", "svm": "svm decision value", "svmDnnRefined": "svm decision value"}


class DeployedModel(nn.Module):
    """uint8 images -> class scores, exactly as script 5 scores the test set."""

    def __init__(self, classifier: Classifier, kind: str, svm_coef: np.ndarray | None = None,
                 svm_intercept: np.ndarray | None = None, l2_normalize: bool = True):
        super().__init__()
        if kind not in SCORE_KINDS:
            raise ValueError(f"classifier must be one of {', '.join(SCORE_KINDS)}, got {kind!r}")
        self.classifier, self.kind, self.l2_normalize = classifier.eval(), kind, l2_normalize
        if kind != "dnn":
            if svm_coef is None or svm_intercept is None:
                raise ValueError(f"classifier {kind!r} needs the SVM's coef and intercept")
            self.svm = nn.Linear(svm_coef.shape[1], svm_coef.shape[0])
            with torch.no_grad():
                self.svm.weight.copy_(torch.as_tensor(svm_coef))
                self.svm.bias.copy_(torch.as_tensor(svm_intercept))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.classifier.features(x)
        if self.kind == "dnn":
            return torch.softmax(self.classifier.head(features), dim=1)
        if self.l2_normalize:
            features = features / features.norm(dim=1, keepdim=True).clamp_min(1e-12)
        return self.svm(features)


def export(model: DeployedModel, out_dir: Path, labels: list[str], input_size: int, backbone: str) -> Path:
    """Write ``model.onnx``, ``labels.json`` and ``deploy.json`` into ``out_dir``; return the ONNX path."""
    out_dir = Path(out_dir)
    onnx_path = out_dir / "model.onnx"
    export_onnx(model.eval(), onnx_path, input_size)
    save_json(out_dir / "labels.json", list(labels))
    save_json(out_dir / "deploy.json", {"classifier": model.kind, "score": SCORE_KINDS[model.kind], "backbone": backbone,
                                        "input_size": input_size, "input": "uint8 RGB, (batch, size, size, 3)",
                                        "labels": list(labels), "model": onnx_path.name})
    return onnx_path


def export_pipeline_model(proc_dir: Path, classifier: str) -> Path:
    """Export what scripts 2-4 trained in ``proc_dir`` for ``classifier`` (as script 5 does); return the ONNX path."""
    from .model_io import load_model

    proc_dir = Path(proc_dir)
    model, meta = load_model(proc_dir / "model.json")
    if classifier == "dnn":
        if not meta["refined"]:
            raise FileNotFoundError(f"classifier 'dnn' needs a refined DNN in {proc_dir}: run scripts/2_refineDNN.py with classifier='dnn'")
        deployed = DeployedModel(model, "dnn")
    else:
        svm, svm_meta = load_npz(proc_dir / "svm.npz"), load_json(proc_dir / "svm.json")
        deployed = DeployedModel(model, classifier, svm["coef"], svm["intercept"], svm_meta["l2_normalize"])
    return export(deployed, proc_dir, meta["labels"], meta["input_size"], meta["backbone"])
