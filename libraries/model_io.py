"""Saving and loading the model that featurization uses: a torch state dict (``model.pt``) plus JSON metadata
(``model.json``) that says which backbone, input size, normalisation and labels it has."""
from __future__ import annotations

from pathlib import Path

import torch

from .artifacts import file_digest, load_json, save_json, save_torch, text_digest
from .backbones import Classifier, build_classifier, get_backbone
from .presets import PREPROCESSING_VERSION


def describe(backbone: str, input_size: int, labels: list[str], refined: bool, pretrained_weights: str | None,
             config_key: str, **extra) -> dict:
    spec = get_backbone(backbone)
    weights_file = pretrained_weights or spec.default_weights()
    source_digest = file_digest(weights_file) if weights_file and Path(weights_file).is_file() else f"{backbone}-imagenet"
    return {"backbone": backbone, "input_size": input_size, "mean": list(spec.mean), "std": list(spec.std),
            "feature_dim": spec.feature_dim, "labels": list(labels), "refined": refined,
            "pretrained_weights": pretrained_weights, "pretrained_digest": source_digest,
            "config_key": config_key, **extra}


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
    meta_path = Path(meta_path)
    if not meta_path.is_file():
        raise FileNotFoundError(f"{meta_path} does not exist: run scripts/2_refineDNN.py first")
    meta = load_json(meta_path)
    if meta.get("refined"):
        weights = meta_path.parent / meta["weights_file"]
        if not weights.is_file() or file_digest(weights) != meta["weights_digest"]:
            raise FileNotFoundError(f"{weights} is missing or does not match {meta_path}: run scripts/2_refineDNN.py again")
    return meta


def load_model(meta_path: Path, dropout: float = 0.0) -> tuple[Classifier, dict]:
    """The model that ``model.json`` describes, in eval mode on the CPU."""
    meta = load_meta(meta_path)
    if meta["refined"]:
        model = build_classifier(meta["backbone"], len(meta["labels"]), meta["input_size"], pretrained=False, dropout=dropout)
        state = torch.load(Path(meta_path).parent / meta["weights_file"], map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    else:
        model = build_classifier(meta["backbone"], len(meta["labels"]), meta["input_size"],
                                 weights=meta.get("pretrained_weights"), dropout=dropout)
    return model.eval(), meta


def feature_key(meta: dict) -> str:
    """What the features of an image depend on, besides the image itself."""
    return text_digest([meta["backbone"], meta["input_size"], meta["weights_digest"], meta["mean"], meta["std"],
                        PREPROCESSING_VERSION])
