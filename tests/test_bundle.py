"""The deployable bundle: written by one function, read by one, and refused when its parts disagree."""
import json

import numpy as np
import pytest
import torch

from libraries import bundle, export, scoring
from libraries.errors import MissingArtifact, StaleArtifact

from service_helpers import SIZE, export_tiny_model


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return export_tiny_model(tmp_path_factory.mktemp("bundle"))


def batch(n=3):
    return np.random.default_rng(1).integers(0, 256, (n, SIZE, SIZE, 3), dtype=np.uint8)


def test_dnn_head_is_a_softmax_of_the_logits():
    linear = torch.nn.Linear(4, 3)
    features = torch.randn(5, 4)
    probabilities, raw = scoring.score(features.numpy(), scoring.dnn_head(linear))
    with torch.no_grad():
        expected = torch.softmax(linear(features), 1).numpy()
    np.testing.assert_allclose(probabilities, expected, atol=1e-6)
    np.testing.assert_allclose(raw, linear(features).detach().numpy(), atol=1e-6)


def test_bundle_reads_back_and_runs_the_same_head_as_evaluation(tiny):
    read = bundle.read(tiny)
    assert read.labels == ["horizontal", "vertical"] and read.input_size == SIZE and read.meta["classifier"] == "svm"
    probabilities, raw = read.run(batch())
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert probabilities.shape == raw.shape == (3, 2)
    assert "calibrated probability" in read.meta["score"] and read.meta["raw_score"] == "SVM margin"


@pytest.mark.parametrize("tta", ["none", "dihedral"])
def test_exported_graph_equals_the_torch_module(tmp_path, tta):
    from libraries.backbones import build_classifier

    classifier = build_classifier("efficientnet_lite0", 3, SIZE).eval()
    head = scoring.dnn_head(classifier.head)
    deployed = export.DeployedModel(classifier, head, tta)
    bundle.write(tmp_path, deployed, ["a", "b", "c"], SIZE, {"classifier": "dnn"})
    x = batch(4)
    onnx_probabilities, onnx_raw = bundle.read(tmp_path).run(x)
    with torch.inference_mode():
        torch_probabilities, torch_raw = deployed(torch.from_numpy(x))
    np.testing.assert_allclose(onnx_probabilities, torch_probabilities.numpy(), atol=1e-5)
    np.testing.assert_allclose(onnx_raw, torch_raw.numpy(), atol=1e-4)


def test_labels_that_disagree_with_the_model_are_refused(tiny, tmp_path):
    for name in ("model.onnx", "labels.json", "deploy.json"):
        (tmp_path / name).write_bytes((tiny / name).read_bytes())
    (tmp_path / "labels.json").write_text('["horizontal", "vertical", "poly_ok"]')
    with pytest.raises(StaleArtifact, match="labels.json is not the file deploy.json was written with"):
        bundle.read(tmp_path)
    meta = json.loads((tmp_path / "deploy.json").read_text())  # even when deploy.json is made to agree:
    from libraries.artifacts import file_digest

    meta["labels_digest"] = file_digest(tmp_path / "labels.json")
    (tmp_path / "deploy.json").write_text(json.dumps(meta))
    with pytest.raises(StaleArtifact, match="model.onnx has 2 outputs but labels.json names 3 labels"):
        bundle.read(tmp_path)


def test_a_model_from_another_run_is_refused(tiny, tmp_path):
    other = export_tiny_model(tmp_path / "other", kind="dnn")
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for name in ("labels.json", "deploy.json"):
        (mixed / name).write_bytes((tiny / name).read_bytes())
    (mixed / "model.onnx").write_bytes((other / "model.onnx").read_bytes())
    with pytest.raises(StaleArtifact, match="model.onnx is not the file deploy.json was written with"):
        bundle.read(mixed)


def test_a_missing_bundle_names_the_script(tmp_path):
    with pytest.raises(MissingArtifact, match="model.onnx does not exist: run scripts 1-5"):
        bundle.read(tmp_path)
