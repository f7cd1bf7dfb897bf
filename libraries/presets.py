"""Image preprocessing, shared by refinement, featurization and export so that they cannot drift apart.

Evaluation: the whole image is resized (aspect ratio not kept, nothing cropped away, as in the original
sample) to ``size`` x ``size`` with Pillow's antialiased bilinear filter, then normalised per channel as
``(pixel - mean) / std`` in 0..255 units. Training: a random resized crop, a horizontal flip and colour
jitter, then the same normalisation.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

PREPROCESSING_VERSION = "resize-bilinear-v1"  # part of every feature-cache key: change it when the code below changes


def resize_square(rgb: np.ndarray, size: int) -> np.ndarray:
    """Resize an (H, W, 3) uint8 image to (size, size, 3)."""
    if rgb.shape[0] == size and rgb.shape[1] == size:
        return rgb
    return np.asarray(Image.fromarray(rgb).resize((size, size), Image.BILINEAR))


def normalize(rgb: np.ndarray, mean, std) -> np.ndarray:
    """(H, W, 3) uint8 to a (3, H, W) float32 array, ``(pixel - mean) / std`` per channel."""
    scale = (1.0 / np.asarray(std, dtype=np.float32)).reshape(3, 1, 1)
    offset = np.asarray(mean, dtype=np.float32).reshape(3, 1, 1)
    return (rgb.transpose(2, 0, 1).astype(np.float32) - offset) * scale


def eval_preprocess(rgb: np.ndarray, size: int, mean, std) -> np.ndarray:
    """The preprocessing of every non-training pass: resize, then normalise. Returns (3, size, size) float32."""
    return normalize(resize_square(rgb, size), mean, std)


def train_transform(size: int, mean, std):
    """Train-time augmentation, from an (H, W, 3) uint8 array to a normalised (3, size, size) float tensor."""
    import torch
    from torchvision.transforms import v2

    return v2.Compose([
        v2.ToImage(),
        v2.RandomResizedCrop(size, scale=(0.5, 1.0), antialias=True),
        v2.RandomHorizontalFlip(),
        v2.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2),
        v2.ToDtype(torch.float32, scale=False),
        v2.Normalize(mean=list(mean), std=list(std)),
    ])
