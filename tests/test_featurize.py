import numpy as np
import pytest
import torch

from libraries import featurize, onnx_export, presets
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
    cache = featurize.FeatureCache(tmp_path / "cache")
    first, rows, failures = featurize.featurize(paths[:10], engine, SIZE, cache, batch_size=4, progress=False)
    assert first.shape == (10, 1280) and engine.images == 10 and not failures
    cache = featurize.FeatureCache(tmp_path / "cache")  # as a new run would
    second, rows, _ = featurize.featurize(paths, engine, SIZE, cache, batch_size=4, progress=False)
    assert engine.images == 12  # only the 2 new images
    np.testing.assert_allclose(second[:10], first, atol=1e-5)
    assert list(rows) == list(range(12))


def test_unreadable_images_are_skipped_and_reported(tmp_path, extractor):
    make_dataset(tmp_path, {"a": 3})
    (tmp_path / "a" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 garbage")
    paths = sorted((tmp_path / "a").iterdir())
    cache = featurize.FeatureCache(tmp_path / "cache")
    features, rows, failures = featurize.featurize(paths, featurize.TorchEngine(extractor), SIZE, cache, batch_size=2, progress=False)
    assert features.shape[0] == 3
    assert [p.name for p, _ in failures] == ["broken.jpg"]
    assert [paths[i].name for i in rows] == ["a_000.jpg", "a_001.jpg", "a_002.jpg"]


def test_onnxruntime_matches_torch(tmp_path, extractor):
    make_dataset(tmp_path, {"a": 4})
    batch = np.stack([featurize.load_and_preprocess(p, SIZE) for p in sorted((tmp_path / "a").iterdir())])
    onnx_export.export_onnx(extractor, tmp_path / "f.onnx", SIZE)
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


def test_dihedral_augmentation_turns_and_flips_and_standard_does_not():
    """An image whose corners differ: over many draws, 'dihedral' puts its bright corner in all four corners,
    'standard' (horizontal flips only) in two."""
    image = np.zeros((64, 64, 3), np.uint8)
    image[:16, :16] = 255  # top-left bright
    corners = {}
    for augmentation in presets.AUGMENTATIONS:
        transform, seen = presets.train_transform(64, augmentation), set()
        torch.manual_seed(0)
        for _ in range(80):
            out = transform(image).numpy()[..., 0].astype(float)
            quads = [out[:24, :24].mean(), out[:24, -24:].mean(), out[-24:, :24].mean(), out[-24:, -24:].mean()]
            seen.add(int(np.argmax(quads)))
        corners[augmentation] = seen
    assert corners["dihedral"] == {0, 1, 2, 3} and corners["standard"] <= {0, 1}
    with pytest.raises(ValueError, match="augmentation must be one of"):
        presets.train_transform(64, "mirror")


def test_eval_preprocess_resizes_whole_image_to_uint8():
    rgb = np.zeros((30, 60, 3), np.uint8)
    rgb[:, 30:] = 200  # right half bright: stays the right half, nothing cropped
    x = presets.eval_preprocess(rgb, 32)
    assert x.shape == (32, 32, 3) and x.dtype == np.uint8
    assert x[:, :14].max() == 0 and x[:, 18:].min() == 200
    big = presets.eval_preprocess(np.full((900, 700, 3), 7, np.uint8), 64)  # > 2x shrink: area averaging
    assert big.shape == (64, 64, 3) and (big == 7).all()


def test_normalize_layer_matches_backbone_convention():
    from libraries.backbones import Normalize

    x = torch.tensor([[[[255, 127, 0]]]], dtype=torch.uint8)  # (1, 1, 1, 3)
    out = Normalize((127.0,) * 3, (128.0,) * 3)(x)
    assert out.shape == (1, 3, 1, 1)
    torch.testing.assert_close(out.flatten(), torch.tensor([1.0, 0.0, -127 / 128]))


@pytest.mark.parametrize("augmentation", presets.AUGMENTATIONS)
def test_train_transform_output(augmentation):
    out = presets.train_transform(48, augmentation)(np.full((60, 80, 3), 9, np.uint8))
    assert isinstance(out, torch.Tensor) and out.shape == (48, 48, 3) and out.dtype == torch.uint8


@pytest.mark.parametrize("requested, cuda, onnxruntime, expected", [
    ("auto", False, True, "onnxruntime"),
    ("auto", True, True, "cuda"),
    ("auto", False, False, "cpu"),
    ("torch", False, True, "cpu"),
    ("torch", True, True, "cuda"),
    ("onnxruntime", True, True, "onnxruntime"),
])
def test_engine_choice(monkeypatch, requested, cuda, onnxruntime, expected):
    import builtins

    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "onnxruntime" and not onnxruntime:
            raise ImportError("no onnxruntime")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    assert featurize.choose_engine(requested) == expected


def test_onnxruntime_asked_for_but_missing_is_a_clear_error(monkeypatch):
    import builtins

    from libraries.errors import BadParameter

    real_import = builtins.__import__
    monkeypatch.setattr(builtins, "__import__", lambda name, *a, **k: (_ for _ in ()).throw(ImportError(name))
                        if name == "onnxruntime" else real_import(name, *a, **k))
    with pytest.raises(BadParameter, match="run_engine='onnxruntime' but onnxruntime is not installed"):
        featurize.choose_engine("onnxruntime")


def test_an_interrupted_featurization_keeps_finished_batches(tmp_path, extractor):
    make_dataset(tmp_path / "img", {"a": 10})
    paths = sorted((tmp_path / "img").rglob("*.jpg"))
    torch_engine = featurize.TorchEngine(extractor)
    calls = 0

    def dies_on_third_batch(batch):
        nonlocal calls
        calls += 1
        if calls == 3:
            raise KeyboardInterrupt
        return torch_engine(batch)

    with pytest.raises(KeyboardInterrupt):
        featurize.featurize(paths, dies_on_third_batch, SIZE, featurize.FeatureCache(tmp_path / "c"), batch_size=2,
                            save_every_s=0, progress=False)
    engine = CountingEngine(torch_engine)
    features, rows, _ = featurize.featurize(paths, engine, SIZE, featurize.FeatureCache(tmp_path / "c"), batch_size=2,
                                            progress=False)
    assert engine.images == 6  # the two finished batches (4 images) were kept on disk
    assert features.shape == (10, 1280)


def test_large_features_go_to_parquet_shards_that_read_back_the_same(tmp_path, monkeypatch):
    from libraries.errors import MissingArtifact, StaleArtifact
    from libraries.provenance import identity

    monkeypatch.setattr(featurize, "SHARD_ROWS", 5)
    vectors = np.random.default_rng(0).normal(size=(12, 7)).astype(np.float32)
    rows = dict(image_paths=[f"a/{i}.jpg" for i in range(12)], labels=[i % 2 for i in range(12)],
                subset=["train"] * 9 + ["test"] * 3, feature_key="key", provenance={"step": "features"})
    featurize.save_features(tmp_path / "plain.npz", vectors, **rows)
    shards = tmp_path / "shards"
    featurize.save_features(tmp_path / "sharded.npz", vectors, **rows, shard_dir=shards, shard_above=10)
    first = sorted(p.name for p in shards.iterdir())
    assert len(first) == 3 and all(name.endswith(".parquet") for name in first)  # 5 + 5 + 2 rows
    assert "features" not in np.load(tmp_path / "sharded.npz").files  # the vectors are in the shards alone
    plain = featurize.load_features(tmp_path / "plain.npz")
    sharded = featurize.load_features(tmp_path / "sharded.npz", shards)
    assert set(sharded) == set(plain) and np.array_equal(sharded["features"], vectors)
    assert list(sharded["paths"]) == list(plain["paths"])
    assert identity(tmp_path / "sharded.npz") == identity(tmp_path / "plain.npz")  # the same artifact to its readers
    # written again with other vectors: new shards, the old ones gone, never a mix
    featurize.save_features(tmp_path / "sharded.npz", vectors + 1, **rows, shard_dir=shards, shard_above=10)
    assert len(list(shards.iterdir())) == 3 and not set(first) & {p.name for p in shards.iterdir()}
    assert np.array_equal(featurize.load_features(tmp_path / "sharded.npz", shards)["features"], vectors + 1)
    # below the threshold again: one .npz, and no shard left
    featurize.save_features(tmp_path / "sharded.npz", vectors, **rows, shard_dir=shards, shard_above=100)
    assert list(shards.iterdir()) == [] and "shards" not in featurize.load_features(tmp_path / "sharded.npz", shards)
    # a changed or missing shard is refused, naming the script to rerun
    featurize.save_features(tmp_path / "sharded.npz", vectors, **rows, shard_dir=shards, shard_above=10)
    victim = sorted(shards.iterdir())[1]
    victim.write_bytes(victim.read_bytes()[:-8] + b"12345678")
    with pytest.raises(StaleArtifact, match="is not the shard sharded.npz was written with: rerun scripts/3_runDNN.py"):
        featurize.load_features(tmp_path / "sharded.npz", shards)
    victim.unlink()
    with pytest.raises(MissingArtifact, match="does not exist, but sharded.npz names it"):
        featurize.load_features(tmp_path / "sharded.npz", shards)


def test_feature_cache_appends_parts_and_never_rewrites_them(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    digests = np.array([f"{i:032x}" for i in range(40)], dtype="S32")
    vectors = rng.normal(size=(40, 6)).astype(np.float32)
    cache = featurize.FeatureCache(tmp_path / "c")
    cache.add(digests[:10], vectors[:10])
    assert not (tmp_path / "c").exists()  # nothing on disk before a flush
    cache.flush()
    first = tmp_path / "c" / "part-00000.vectors.npy"
    written = first.stat()
    cache.add(digests[10:25], vectors[10:25])
    cache.flush()
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == [
        "part-00000.digests.npy", "part-00000.vectors.npy", "part-00001.digests.npy", "part-00001.vectors.npy"]
    assert (first.stat().st_ino, first.stat().st_mtime_ns) == (written.st_ino, written.st_mtime_ns)  # appended, not rewritten

    reopened = featurize.FeatureCache(tmp_path / "c")  # as the next run opens it: the digests read, the vectors mapped
    assert len(reopened) == 25 and all(isinstance(v, np.memmap) for _, v in reopened._parts)
    known = reopened.contains(digests)
    assert known[:25].all() and not known[25:].any()
    order = rng.permutation(25)
    np.testing.assert_array_equal(reopened.get(digests[order]), vectors[order])
    reopened.add(digests[25:26], vectors[25:26])  # pending vectors are found before they are flushed
    np.testing.assert_array_equal(reopened.get(digests[[25, 3]]), vectors[[25, 3]])

    # a crash between a part's two files leaves vectors without digests: ignored, never half-read
    (tmp_path / "c" / "part-00002.vectors.npy").write_bytes(b"half-written")
    assert len(featurize.FeatureCache(tmp_path / "c")) == 25

    # many small parts (one per flush or rerun) are merged into one, the same vectors under the same digests
    monkeypatch.setattr(featurize.FeatureCache, "MAX_SMALL_PARTS", 2)
    cache = featurize.FeatureCache(tmp_path / "c")
    cache.add(digests[25:40], vectors[25:40])
    cache.flush()
    parts = sorted(p.name for p in (tmp_path / "c").glob("part-*.digests.npy"))
    assert len(parts) == 1
    np.testing.assert_array_equal(featurize.FeatureCache(tmp_path / "c").get(digests), vectors)


def test_a_cache_of_the_single_file_kind_is_taken_over(tmp_path):
    from libraries.artifacts import save_npz

    vectors = np.arange(12, dtype=np.float32).reshape(3, 4)
    save_npz(tmp_path / "key.npz", digests=np.array(["a" * 32, "b" * 32, "c" * 32]), vectors=vectors)
    cache = featurize.FeatureCache(tmp_path / "key")
    assert not (tmp_path / "key.npz").exists() and (tmp_path / "key" / "part-00000.digests.npy").is_file()
    np.testing.assert_array_equal(cache.get(np.array([b"c" * 32, b"a" * 32])), vectors[[2, 0]])


def test_features_read_from_the_cache_in_blocks_give_the_same_artifact(tmp_path, monkeypatch):
    """``featurize`` returns rows that are read from the cache when sliced: Parquet shards are written one block at a
    time, and the artifact (its content digest, its vectors) is the one an array in memory gives."""
    from libraries.artifacts import content_digest
    from libraries.provenance import identity

    monkeypatch.setattr(featurize, "SHARD_ROWS", 4)
    vectors = np.random.default_rng(1).normal(size=(10, 5)).astype(np.float32)
    digests = np.array([f"{i:032x}" for i in range(10)], dtype="S32")
    cache = featurize.FeatureCache(tmp_path / "c")
    cache.add(digests, vectors)
    cache.flush()
    rows = featurize.CachedRows(featurize.FeatureCache(tmp_path / "c"), digests[::-1])
    assert rows.shape == (10, 5) and len(rows) == 10
    np.testing.assert_array_equal(rows[2:5], vectors[::-1][2:5])
    assert content_digest(features=rows) == content_digest(features=vectors[::-1].copy())
    meta = dict(image_paths=[f"{i}.jpg" for i in range(10)], labels=[0] * 10, subset=["train"] * 10,
                feature_key="k", provenance={})
    featurize.save_features(tmp_path / "lazy.npz", rows, **meta, shard_dir=tmp_path / "s", shard_above=5)
    featurize.save_features(tmp_path / "plain.npz", vectors[::-1].copy(), **meta)
    assert identity(tmp_path / "lazy.npz") == identity(tmp_path / "plain.npz")
    np.testing.assert_array_equal(featurize.load_features(tmp_path / "lazy.npz", tmp_path / "s")["features"], vectors[::-1])


def test_a_file_that_cannot_be_read_is_reported_and_the_run_goes_on(tmp_path, extractor):
    make_dataset(tmp_path, {"a": 3})
    paths = sorted((tmp_path / "a").iterdir()) + [tmp_path / "a" / "gone.jpg"]  # listed, then deleted
    features, rows, failures = featurize.featurize(paths, featurize.TorchEngine(extractor), SIZE,
                                                   featurize.FeatureCache(tmp_path / "cache"), batch_size=2, progress=False)
    assert features.shape == (3, 1280) and list(rows) == [0, 1, 2]
    assert failures == [(paths[3], featurize.UNREADABLE_FILE)]
