"""Image preprocessing, shared by refinement, featurization, export and serving so that they cannot drift apart.

Host side (here): the decoded image is resized whole to ``size`` x ``size`` (aspect ratio not kept, nothing
cropped away, as in the original sample) and handed over as uint8 RGB, (size, size, 3). Network side: the
first layer of every model (``backbones.Normalize``) turns uint8 into ``(pixel - mean) / std`` with the
backbone's own mean and std, so torch, the exported ONNX graph and the web service all normalise the same way.
Training resizes to ``train_load_size`` and then takes a random resized crop, a horizontal flip and colour jitter.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .images import read_image

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


def load_and_preprocess(path: Path, size: int) -> np.ndarray:
    """An image file as every non-training pass feeds it to the network (``images.read_image``, then
    ``eval_preprocess``); raises ``images.ImageError`` for a file that cannot be read."""
    return eval_preprocess(read_image(path, min_size=size), size)


def _to_hwc(image):
    return image.permute(1, 2, 0).contiguous()


class RandomQuarterTurn:
    """Rotate a (C, H, W) image by 0, 90, 180 or 270 degrees, each equally likely (torch's global generator)."""

    def __call__(self, image):
        import torch

        return torch.rot90(image, int(torch.randint(4, ())), dims=(-2, -1))


AUGMENTATIONS = ("standard", "dihedral")  # train-time augmentation presets (rf_augmentation)
TTA_MODES = ("none", "flip", "dihedral")  # test-time augmentation (run_tta): the views are backbones.test_time_views
CROP_SCALE = (0.6, 1.0)  # the area range of the random crops, as a fraction of the image


def train_load_size(size: int) -> int:
    """Training images are first resized to this square size (decoded once and kept in memory where they fit),
    then cropped at random and resized to ``size``: 8/7 of it, as for the usual 256 -> 224."""
    return round(size * 8 / 7)


def train_transform(size: int, augmentation: str = "standard"):
    """Train-time augmentation: (H, W, 3) uint8 array (``train_load_size`` square) -> (size, size, 3) uint8
    tensor, like ``eval_preprocess``.

    - ``standard``: a random resized crop, a horizontal flip and colour jitter (photos of things with an up);
    - ``dihedral``: the same, plus a vertical flip and quarter turns, for images with no natural orientation
      (solar cells, textures, micrographs, satellite tiles).
    """
    from torchvision.transforms import v2

    if augmentation not in AUGMENTATIONS:
        raise ValueError(f"augmentation must be one of {AUGMENTATIONS}, got {augmentation!r}")
    turns = [v2.RandomVerticalFlip(), RandomQuarterTurn()] if augmentation == "dihedral" else []
    return v2.Compose([
        v2.ToImage(),
        v2.RandomResizedCrop(size, scale=CROP_SCALE, antialias=True),
        v2.RandomHorizontalFlip(),
        *turns,
        v2.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2),
        _to_hwc,
    ])
