"""Why a prediction was made: class activation maps over the image, for every classifier.

- ``dnn``: Grad-CAM (the ``grad-cam`` package, pytorch-grad-cam) of the refined network's class score, on the
  backbone's last feature map.
- ``svm`` and ``svmDnnRefined``: the exact class activation map of a linear model on average-pooled features,
  the SVM's weight vector of the class applied to the last feature map at each position, sum_c w_kc A_c(x, y)
  (L2 normalisation scales a whole image by one positive number, so it does not change the map).

Maps are computed on the image itself (no test-time views), cut at zero, scaled to [0, 1] per image and
resized to the input size; ``overlay`` draws one over its image with the library's colour map.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import export, provenance
from .backbones import Classifier, feature_map
from .featurize import load_and_preprocess
from .layout import DatasetPaths
from .model_io import load_model
from .scoring import ScoreHead


class _ClassScores(nn.Module):
    """Normalised (B, 3, H, W) images -> raw class scores through the last feature map: what Grad-CAM differentiates."""

    def __init__(self, classifier: Classifier, linear: nn.Linear):
        super().__init__()
        self.backbone, self.linear = classifier.backbone, linear

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(feature_map(self.backbone, x).mean(dim=(2, 3)))


class Explainer:
    """Class activation maps of one trained pipeline (its network and its head)."""

    def __init__(self, classifier: Classifier, head: ScoreHead, kind: str, input_size: int):
        self.classifier, self.head, self.kind, self.input_size = classifier.eval(), head.eval(), kind, input_size

    @classmethod
    def from_paths(cls, paths: DatasetPaths, params: dict | None = None) -> "Explainer":
        """The pipeline that script 5 evaluated and exported. With ``params`` (script 5 itself) its artifacts must be
        the ones these parameters make; without (predict.py --cam, the notebooks), the last evaluation and everything
        it was made from must be current, whichever parameters made them (a refined ``dnn`` included)."""
        if params is None:
            classifier = provenance.check_evaluation(paths)["parameters"]["classifier"]
        else:
            provenance.check_chain(paths, params, upto="evaluation")
            classifier = params["classifier"]
        model, meta = load_model(paths.model_meta)
        return cls(model, export.load_head(paths, classifier, model), classifier, meta["input_size"])

    def load(self, path: Path) -> np.ndarray:
        """The model's input for an image file: (S, S, 3) uint8, as featurization prepares it."""
        return load_and_preprocess(path, self.input_size)

    def maps(self, images: np.ndarray, classes: list[int]) -> np.ndarray:
        """(B, S, S) maps in [0, 1] of the given classes for a (B, S, S, 3) uint8 batch."""
        x = self.classifier.normalize(torch.from_numpy(np.ascontiguousarray(images))).contiguous()
        if self.kind == "dnn":
            from pytorch_grad_cam import GradCAM
            from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

            layer = self.classifier.trunk_blocks()[-1][-1]
            with GradCAM(model=_ClassScores(self.classifier, self.head.linear), target_layers=[layer]) as cam:
                return cam(input_tensor=x, targets=[ClassifierOutputTarget(int(k)) for k in classes]).astype(np.float32)
        with torch.inference_mode():
            activations = feature_map(self.classifier.backbone, x)
            weights = self.head.linear.weight[torch.as_tensor(list(classes))]
            cams = torch.relu(torch.einsum("bc,bchw->bhw", weights, activations))
            cams = F.interpolate(cams[:, None], size=images.shape[1:3], mode="bilinear", align_corners=False)[:, 0]
            low = cams.flatten(1).min(1).values[:, None, None]
            high = cams.flatten(1).max(1).values[:, None, None]
            return ((cams - low) / (high - low).clamp_min(1e-12)).numpy().astype(np.float32)


def overlay(image: np.ndarray, cam: np.ndarray) -> np.ndarray:
    """The map over its (S, S, 3) uint8 image, as uint8 RGB (pytorch-grad-cam's ``show_cam_on_image``)."""
    from pytorch_grad_cam.utils.image import show_cam_on_image

    return show_cam_on_image(image.astype(np.float32) / 255, cam, use_rgb=True, image_weight=0.55)


def peak(cam: np.ndarray) -> tuple[int, int]:
    """(row, column) of the map's maximum."""
    return tuple(int(v) for v in np.unravel_index(int(np.argmax(cam)), cam.shape))


def overlays(explainer: Explainer, files: list[Path], classes: list[int], batch_size: int = 16) -> list[np.ndarray]:
    """The map of ``classes[i]`` over ``files[i]``, as (S, S, 3) uint8 RGB images, computed in batches."""
    out = []
    for start in range(0, len(files), batch_size):
        images = np.stack([explainer.load(f) for f in files[start:start + batch_size]])
        maps = explainer.maps(images, classes[start:start + batch_size])
        out += [overlay(image, cam) for image, cam in zip(images, maps)]
    return out

