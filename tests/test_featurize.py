import numpy as np
import pytest
import torch

from libraries import featurize, presets
from libraries.backbones import FeatureExtractor, build_classifier

from conftest import make_dataset

SIZE = 64


@pytest.fixture(scope="module")
def extractor():
    return FeatureExtractor(build_classifier("efficientnet_lite0", 2, SIZE).eval())


class CountingEngine:
    def __init__(self, engine):
        self.engine, self.images = engine, 0

    def __call__(self, batch):
        self.images += len(batch)
        return self.engine(batch)


def test_cache_makes_a_rerun_featurize_only_new_images(tmp_path, extractor):
    make_dataset(tmp_path / "img", {"a": 6, "b": 6})
    paths = sorted((tmp_path / "img").rglob("*.jpg"))
    engine = CountingEngine(featurize.TorchEngine(extractor))
    mean, std = (127.0,) * 3, (128.0,) * 3
    cache = featurize.FeatureCache(tmp_path / "cache.npz")
    first, rows, failures = featurize.featurize(paths[:10], engine, SIZE, mean, std, cache, batch_size=4, progress=False)
    assert first.shape == (10, 1280) and engine.images == 10 and not failures
    cache = featurize.FeatureCache(tmp_path / "cache.npz")  # as a new run would
    second, rows, _ = featurize.featurize(paths, engine, SIZE, mean, std, cache, batch_size=4, progress=False)
    assert engine.images == 12  # only the 2 new images
    np.testing.assert_allclose(second[:10], first, atol=1e-5)
    assert list(rows) == list(range(12))


def test_unreadable_images_are_skipped_and_reported(tmp_path, extractor):
    make_dataset(tmp_path, {"a": 3})
    (tmp_path / "a" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 garbage")
    paths = sorted((tmp_path / "a").iterdir())
    cache = featurize.FeatureCache(tmp_path / "cache.npz")
    features, rows, failures = featurize.featurize(paths, featurize.TorchEngine(extractor), SIZE, (127,) * 3, (128,) * 3,
                                                   cache, batch_size=2, progress=False)
    assert features.shape[0] == 3
    assert [p.name for p, _ in failures] == ["broken.jpg"]
    assert [paths[i].name for i in rows] == ["a_000.jpg", "a_001.jpg", "a_002.jpg"]


def test_onnxruntime_matches_torch(tmp_path, extractor):
    make_dataset(tmp_path, {"a": 4})
    batch = np.stack([featurize.load_and_preprocess(p, SIZE, (127,) * 3, (128,) * 3) for p in sorted((tmp_path / "a").iterdir())])
    featurize.export_onnx(extractor, tmp_path / "f.onnx", SIZE)
    ort_out = featurize.OnnxEngine(tmp_path / "f.onnx")(batch)
    torch_out = featurize.TorchEngine(extractor)(batch)
    np.testing.assert_allclose(ort_out, torch_out, atol=1e-4)
    assert featurize.OnnxEngine(tmp_path / "f.onnx")(batch[:1]).shape == (1, 1280)  # dynamic batch axis


def test_iter_batches_keeps_order_and_bounds_prefetch():
    in_flight, peak = 0, 0

    def load(i):
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        return np.full(2, i)

    seen = []
    for indices, batch, errors in featurize.iter_batches(list(range(50)), load, batch_size=8, workers=2, prefetch_batches=1):
        in_flight -= len(indices)
        seen += [int(b[0]) for b in batch]
    assert seen == list(range(50))
    assert peak <= 8 * 2 + 8


def test_eval_preprocess_shapes_and_normalisation():
    rgb = np.full((30, 50, 3), 255, np.uint8)
    x = presets.eval_preprocess(rgb, 32, (127,) * 3, (128,) * 3)
    assert x.shape == (3, 32, 32) and x.dtype == np.float32
    np.testing.assert_allclose(x, 1.0)


def test_train_transform_output():
    t = presets.train_transform(48, (127,) * 3, (128,) * 3)
    out = t(np.zeros((60, 80, 3), np.uint8))
    assert isinstance(out, torch.Tensor) and out.shape == (3, 48, 48)
    torch.testing.assert_close(out, torch.full_like(out, -127 / 128))


def test_engine_choice_on_cpu():
    assert featurize.choose_engine("auto") == ("cuda" if torch.cuda.is_available() else "onnxruntime")
    assert featurize.choose_engine("torch") in ("cpu", "cuda")
