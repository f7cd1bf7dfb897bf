"""Step 3: featurize every image of the split with the DNN of step 2.

Each image becomes its pooled penultimate vector (1280 numbers for EfficientNet-Lite0, 512 for ResNet-18/34,
2048 for ResNet-50). Vectors are cached by image content and model, so a rerun after adding images featurizes
only the new ones. Writes features.npz (features, paths, labels, subset) and the ONNX featurizer it ran.
"""
import numpy as np

import PARAMETERS
from libraries import featurize, model_io, settings
from libraries.artifacts import load_json, save_json, save_npz
from libraries.backbones import BACKBONES, FeatureExtractor

P, _ = settings.parse(PARAMETERS, description=__doc__, backbone_names=BACKBONES)
paths = settings.dataset_paths(P)


def main():
    if not paths.split.is_file():
        raise FileNotFoundError(f"{paths.split} does not exist: run scripts/1_prepareData.py first")
    split = load_json(paths.split)
    meta = model_io.load_meta(paths.model_meta)
    if meta["labels"] != split["labels"] or (meta["refined"] != (P.classifier != "svm")):
        raise FileNotFoundError(f"{paths.model_meta} was made for other labels or another classifier: run scripts/2_refineDNN.py again")
    key = model_io.feature_key(meta)
    rows = [(rel, label, "train") for rel, label in split["train"]] + [(rel, label, "test") for rel, label in split["test"]]
    image_paths = [paths.images / rel for rel, _, _ in rows]
    cache = featurize.FeatureCache(paths.feature_cache / f"{key}.npz")

    engine = make_engine(meta, key)
    print(f"featurizing {len(rows)} images with {meta['backbone']} at {meta['input_size']} px, engine: {engine.name}")
    features, kept, failures = featurize.featurize(
        image_paths, engine, meta["input_size"], cache, batch_size=P.run_mbSize)
    for path, reason in failures:
        print(f"skipped unreadable image {path}: {reason}")
    kept_rows = [rows[i] for i in kept]
    save_npz(paths.features, features=features, paths=np.array([r[0] for r in kept_rows]),
             labels=np.array([r[1] for r in kept_rows], dtype=np.int64), subset=np.array([r[2] for r in kept_rows]),
             feature_key=np.array(key))
    print(f"wrote {paths.features}: {features.shape[0]} vectors of {features.shape[1]} numbers"
          + (f"; {len(failures)} image(s) skipped" if failures else ""))


def make_engine(meta, key):
    kind = featurize.choose_engine(P.run_engine)
    model, _ = model_io.load_model(paths.model_meta)
    extractor = FeatureExtractor(model).eval()
    if kind != "onnxruntime":
        return featurize.TorchEngine(extractor, device="cuda" if kind == "cuda" else "cpu")
    sidecar = paths.featurizer_onnx.with_suffix(".json")
    if not (paths.featurizer_onnx.is_file() and sidecar.is_file() and load_json(sidecar).get("feature_key") == key):
        featurize.export_onnx(extractor, paths.featurizer_onnx, meta["input_size"])
        save_json(sidecar, {"feature_key": key, "backbone": meta["backbone"], "input_size": meta["input_size"]})
    return featurize.OnnxEngine(paths.featurizer_onnx)


settings.run(main)
