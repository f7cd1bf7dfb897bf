"""Saving and loading the model that featurization uses: a torch state dict (``model.pt``, refined models only)
plus JSON metadata (``model.json``) that says which backbone, input size and normalisation it has, which labels
its head was trained for, and what it was made from (``provenance``)."""
from __future__ import annotations

from pathlib import Path

import torch

from .artifacts import file_digest, load_json, save_json, save_torch, text_digest
from .backbones import Classifier, build_classifier, get_backbone
from .errors import MissingArtifact, StaleArtifact, UserError
from .layout import SCRIPTS, DatasetPaths
from .provenance import check
from .presets import PREPROCESSING_VERSION


def describe(backbone: str, input_size: int | None, pretrained_weights: str | None, provenance: dict,
             labels: list[str] | None = None, **extra) -> dict:
    """The metadata of a model on ``backbone``; ``labels`` only for a refined one (a fixed backbone has no head)."""
    spec = get_backbone(backbone)
    weights_file = pretrained_weights or spec.default_weights()
    source_digest = file_digest(weights_file) if weights_file and Path(weights_file).is_file() else f"{backbone}-imagenet"
    return {"backbone": backbone, "input_size": spec.resolve_input_size(input_size), "mean": list(spec.mean),
            "std": list(spec.std), "feature_dim": spec.feature_dim, "labels": list(labels) if labels else None,
            "pretrained_weights": pretrained_weights, "pretrained_digest": source_digest, "provenance": provenance,
            **extra}


def save_refined(meta_path: Path, weights_path: Path, model: Classifier, meta: dict) -> dict:
    """Write the state dict, then the metadata that names its digest (so a half-finished save is never trusted)."""
    save_torch(weights_path, model.state_dict())
    meta = {**meta, "refined": True, "weights_file": Path(weights_path).name, "weights_digest": file_digest(weights_path)}
    save_json(meta_path, meta)
    return meta


def save_fixed(meta_path: Path, meta: dict) -> dict:
    meta = {**meta, "refined": False, "weights_file": None, "weights_digest": meta["pretrained_digest"]}
    save_json(meta_path, meta)
    return meta


def load_meta(meta_path: Path) -> dict:
    """``model.json``, after checking that a refined model's weights file is the one it names."""
    meta_path = Path(meta_path)
    if not meta_path.is_file():
        raise MissingArtifact(f"{meta_path} does not exist: run {SCRIPTS['model']} first")
    meta = load_json(meta_path)
    if meta.get("refined"):
        weights = meta_path.parent / meta["weights_file"]
        if not weights.is_file() or file_digest(weights) != meta["weights_digest"]:
            raise StaleArtifact(f"{weights} is missing or is not the file {meta_path.name} was written with: "
                                f"rerun {SCRIPTS['model']}")
    return meta


def load_model(meta_path: Path, dropout: float = 0.0) -> tuple[Classifier, dict]:
    """The model that ``model.json`` describes, in eval mode on the CPU."""
    meta = load_meta(meta_path)
    num_classes = len(meta["labels"]) if meta["refined"] else 1  # a fixed backbone's head is never used
    model = build_classifier(meta["backbone"], num_classes, meta["input_size"], weights=meta.get("pretrained_weights"),
                             dropout=dropout, pretrained=not meta["refined"])
    if meta["refined"]:
        model.load_state_dict(torch.load(Path(meta_path).parent / meta["weights_file"], map_location="cpu",
                                         weights_only=True))
    return model.eval(), meta


def feature_key(meta: dict, tta: str = "none") -> str:
    """What the features of an image depend on, besides the image itself: the model, the preprocessing and the
    test-time augmentation."""
    return text_digest([meta["backbone"], meta["input_size"], meta["weights_digest"], meta["mean"], meta["std"],
                        PREPROCESSING_VERSION, tta])


def up_to_date(paths: DatasetPaths, params: dict) -> dict | None:
    """The metadata of the model on disk if it was made with ``params`` from the current split, else None."""
    try:
        check(paths, "model", params)
        return load_meta(paths.model_meta)
    except UserError:
        return None
