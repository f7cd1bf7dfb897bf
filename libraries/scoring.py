"""The one formula from pooled DNN features to class scores: calibrated probabilities that sum to 1.

``ScoreHead`` is used by evaluation (script 5, on cached features) and is wrapped, unchanged, into the exported
ONNX graph that the service and folder prediction run, so every place shows the same numbers:

- svm / svmDnnRefined: features -> L2-normalise -> SVM margins ``x @ coef.T + intercept`` -> per class
  ``sigmoid(-(a * margin + b))`` (Platt scaling, fit on out-of-fold margins of the training split, see
  ``svm.fit``) -> divided by their sum. For two classes this is exactly Platt's binary probability.
- dnn: the refined network's own head -> softmax.

The raw scores (SVM margins, or the DNN's logits) come out too, named as such, never as probabilities.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

SCORE_MEANING = {
    "svm": "calibrated probability (Platt scaling of the linear SVM's margins, fit on the training split by cross-validation)",
    "svmDnnRefined": "calibrated probability (Platt scaling of the linear SVM's margins, fit on the validation images the refined network did not train on)",
    "dnn": "probability (softmax of the refined DNN's output)",
}
RAW_SCORE_MEANING = {"svm": "SVM margin", "svmDnnRefined": "SVM margin", "dnn": "DNN logit"}


class ScoreHead(nn.Module):
    """(B, D) pooled features -> ((B, K) probabilities, (B, K) raw scores)."""

    def __init__(self, coef: np.ndarray, intercept: np.ndarray, l2_normalize: bool,
                 calibration: tuple[np.ndarray, np.ndarray] | None = None):
        super().__init__()
        coef = torch.as_tensor(np.asarray(coef, np.float32))
        self.linear = nn.Linear(coef.shape[1], coef.shape[0])
        with torch.no_grad():
            self.linear.weight.copy_(coef)
            self.linear.bias.copy_(torch.as_tensor(np.asarray(intercept, np.float32)))
        self.l2_normalize = l2_normalize
        self.calibrated = calibration is not None
        if self.calibrated:
            self.register_buffer("a", torch.as_tensor(np.asarray(calibration[0], np.float32)))
            self.register_buffer("b", torch.as_tensor(np.asarray(calibration[1], np.float32)))

    @property
    def num_classes(self) -> int:
        return self.linear.out_features

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = features.float()
        if self.l2_normalize:
            x = x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)
        raw = self.linear(x)
        if not self.calibrated:
            return torch.softmax(raw, dim=1), raw
        per_class = torch.sigmoid(-(self.a * raw + self.b))
        return per_class / per_class.sum(dim=1, keepdim=True).clamp_min(1e-30), raw


def svm_head(model: dict, l2_normalize: bool) -> ScoreHead:
    """The head of a calibrated SVM as ``svm.fit`` returns it (coef, intercept, cal_a, cal_b)."""
    return ScoreHead(model["coef"], model["intercept"], l2_normalize, (model["cal_a"], model["cal_b"]))


def dnn_head(linear: nn.Linear) -> ScoreHead:
    """The refined network's own classification layer, followed by a softmax (dropout is off at inference)."""
    return ScoreHead(linear.weight.detach().cpu().numpy(), linear.bias.detach().cpu().numpy(), l2_normalize=False)


def score(features: np.ndarray, head: ScoreHead, batch_size: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities, raw scores) of (N, D) features, as float32 arrays."""
    head = head.eval()
    probabilities, raw = [], []
    with torch.inference_mode():
        for start in range(0, len(features), batch_size):
            p, r = head(torch.from_numpy(np.ascontiguousarray(features[start:start + batch_size], np.float32)))
            probabilities.append(p.numpy())
            raw.append(r.numpy())
    k = head.num_classes
    return (np.concatenate(probabilities) if probabilities else np.zeros((0, k), np.float32),
            np.concatenate(raw) if raw else np.zeros((0, k), np.float32))
