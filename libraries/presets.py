"""Image preprocessing, shared by refinement, featurization, export and serving so that they cannot drift apart.

Host side (here): the decoded image is resized whole to ``size`` x ``size`` (aspect ratio not kept, nothing
cropped away, as in the original sample) and handed over as uint8 RGB, (size, size, 3). Network side: the
first layer of every model (``backbones.Normalize``) turns uint8 into ``(pixel - mean) / std`` with the
backbone's own mean and std, so torch, the exported ONNX graph and the web service all normalise the same way.
Training replaces the resize with a random resized crop, a horizontal flip and colour jitter.
"""
from __future__ import annotations

import numpy as np

try:
    import cv2

    cv2.setNumThreads(1)
except ImportError:  # pragma: no cover - Pillow fallback where OpenCV is absent
    cv2 = None

PREPROCESSING_VERSION = "resize-linear-area-uint8-v2"  # part of every feature-cache key: change it when the code below changes


def resize_square(rgb: np.ndarray, size: int) -> np.ndarray:
    """Resize an (H, W, 3) uint8 image to (size, size, 3): bilinear, or pixel-area averaging when shrinking
    by more than 2x (so that large images do not alias)."""
    height, width = rgb.shape[:2]
    if height == size and width == size:
        return rgb
    if cv2 is None:
        from PIL import Image

        return np.asarray(Image.fromarray(rgb).resize((size, size), Image.BILINEAR))
    shrink = max(height, width) / size
    return cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA if shrink > 2 else cv2.INTER_LINEAR)


def eval_preprocess(rgb: np.ndarray, size: int) -> np.ndarray:
    """The host-side preprocessing of every non-training pass: (size, size, 3) uint8 RGB."""
    return np.ascontiguousarray(resize_square(rgb, size))


def _to_hwc(image):
    return image.permute(1, 2, 0).contiguous()


def train_transform(size: int):
    """Train-time augmentation: (H, W, 3) uint8 array -> (size, size, 3) uint8 tensor, like ``eval_preprocess``."""
    from torchvision.transforms import v2

    return v2.Compose([
        v2.ToImage(),
        v2.RandomResizedCrop(size, scale=(0.5, 1.0), antialias=True),
        v2.RandomHorizontalFlip(),
        v2.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2),
        _to_hwc,
    ])
