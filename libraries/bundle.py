"""The deployable bundle: one ONNX graph from uint8 images to class probabilities, its labels, and what it is.

A bundle is a folder holding ``model.onnx``, ``labels.json`` and ``deploy.json`` (names in ``layout``). It is
written by ``write`` and read by ``read``, and by nothing else: the service, folder prediction and the notebooks
all go through ``read``, which refuses a bundle whose files are not the ones ``deploy.json`` was written with, or
whose model has another number of outputs than there are labels. ``deploy.json`` says which classifier it is,
what its scores mean, the input size and preprocessing, and what it was made from.

The graph's input is a (batch, size, size, 3) uint8 RGB batch, resized by ``presets.eval_preprocess``;
normalisation is inside the graph. Its outputs are ``probabilities`` (calibrated, summing to 1) and
``raw_scores`` (SVM margins or DNN logits). Reading needs onnxruntime and numpy, not torch.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .artifacts import file_digest, save_json
from .errors import MissingArtifact, StaleArtifact
from .layout import BUNDLE_FILES, BUNDLE_LABELS, BUNDLE_META, BUNDLE_MODEL, SCRIPTS
from .onnx_export import export_onnx, open_session

OUTPUTS = ("probabilities", "raw_scores")
INPUT = "uint8 RGB, (batch, size, size, 3), resized whole to size x size (presets.eval_preprocess)"


def write(out_dir: Path, module, labels: list[str], input_size: int, meta: dict) -> Path:
    """Export ``module`` ((B, S, S, 3) uint8 -> (probabilities, raw scores)) with ``labels`` and ``meta`` (classifier,
    score meanings, backbone, provenance) as a bundle in ``out_dir``; return the ONNX path. ``deploy.json`` is
    written last and names the digests of the other two, so a half-written bundle is never read."""
    out_dir = Path(out_dir)
    onnx_path, labels_path = out_dir / BUNDLE_MODEL, out_dir / BUNDLE_LABELS
    export_onnx(module.eval(), onnx_path, input_size, output_names=OUTPUTS)
    save_json(labels_path, list(labels))
    save_json(out_dir / BUNDLE_META, {**meta, "input_size": int(input_size), "input": INPUT, "outputs": list(OUTPUTS),
                                      "num_classes": len(labels), "model": BUNDLE_MODEL, "labels": BUNDLE_LABELS,
                                      "model_digest": file_digest(onnx_path), "labels_digest": file_digest(labels_path)})
    return onnx_path


@dataclass
class Bundle:
    """A bundle that passed every check, with its onnxruntime session loaded."""
    directory: Path
    labels: list[str]
    meta: dict
    session: object
    input_size: int

    @property
    def model_path(self) -> Path:
        return self.directory / BUNDLE_MODEL

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(probabilities, raw scores) of a (B, S, S, 3) uint8 batch."""
        probabilities, raw = self.session.run(list(OUTPUTS), {"input": batch})
        return probabilities, raw

    def describe(self) -> str:
        return (f"{self.model_path}: classifier {self.meta.get('classifier')}, backbone {self.meta.get('backbone')}, "
                f"{self.input_size} px, labels {self.labels}")


def check_files(model_dir: Path) -> tuple[dict, list[str]]:
    """(deploy.json, labels) of the bundle in ``model_dir`` after the checks that need no model run: every file is
    there, and each is the one ``deploy.json`` was written with. Refused with one sentence otherwise."""
    model_dir = Path(model_dir)
    make = SCRIPTS["evaluation"]
    for name in BUNDLE_FILES:
        if not (model_dir / name).is_file():
            raise MissingArtifact(f"{model_dir / name} does not exist: run scripts 1-5 for this dataset ({make} exports "
                                  f"the bundle; --set datasetName=... picks the dataset), or point at a folder holding "
                                  f"{', '.join(BUNDLE_FILES)} (MODEL_DIR for the service, --model-dir for scripts/predict.py "
                                  f"and scripts/toLabel.py)")
    meta = json.loads((model_dir / BUNDLE_META).read_text(encoding="utf-8"))
    for name, key in ((BUNDLE_MODEL, "model_digest"), (BUNDLE_LABELS, "labels_digest")):
        if meta.get(key) != file_digest(model_dir / name):
            raise StaleArtifact(f"{model_dir / name} is not the file {BUNDLE_META} was written with (it changed or "
                                f"another run overwrote it): rerun {make}")
    labels = json.loads((model_dir / BUNDLE_LABELS).read_text(encoding="utf-8"))
    if not isinstance(labels, list) or not labels or not all(isinstance(label, str) for label in labels):
        raise StaleArtifact(f"{model_dir / BUNDLE_LABELS} must be a non-empty list of label names: rerun {make}")
    return meta, labels


def read(model_dir: Path, threads: int | None = None) -> Bundle:
    """Read and check the bundle in ``model_dir``; a missing, stale or inconsistent one is refused with one sentence."""
    model_dir = Path(model_dir)
    meta, labels = check_files(model_dir)
    make = SCRIPTS["evaluation"]
    session = open_session(model_dir / BUNDLE_MODEL, threads)
    names = [output.name for output in session.get_outputs()]
    if names[:2] != list(OUTPUTS):
        raise StaleArtifact(f"{model_dir / BUNDLE_MODEL} has outputs {names}, not {list(OUTPUTS)} (an older version "
                            f"of this project exported it): rerun {make}")
    size = int(meta["input_size"])
    bundle = Bundle(model_dir, labels, meta, session, size)
    probabilities, _ = bundle.run(np.zeros((1, size, size, 3), np.uint8))
    if probabilities.shape[1] != len(labels):
        raise StaleArtifact(f"{model_dir / BUNDLE_MODEL} has {probabilities.shape[1]} outputs but {BUNDLE_LABELS} names "
                            f"{len(labels)} labels: the two come from different runs; rerun {make}")
    return bundle
