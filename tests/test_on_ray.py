"""Featurizing and predicting on Ray Data give what the local path gives: on a local 2-CPU Ray cluster that the test
starts, which the scripts join through RAY_ADDRESS as they would a real cluster's."""
import shutil

import numpy as np
import pytest

from libraries.artifacts import load_csv

from conftest import make_dataset, pattern_image, run_script, unlabelled_folder

ray = pytest.importorskip("ray", reason="Ray is not installed ('make venv' installs ray[data] from requirements.txt)")

FAST = ["datasetName=toy", "rf_inputResolution=64", "svm_CVals=[0.01,1,100]", "run_mbSize=8", "track_boMlflow=False"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A local Ray cluster with 2 CPUs; its address is what RAY_ADDRESS names for the scripts. HOME is a folder of
    the test's own while it runs: Ray writes its token to ~/.ray/auth_token, and the scripts look for it there."""
    from libraries import on_ray

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HOME", str(tmp_path_factory.mktemp("home")))
        on_ray.connect(num_cpus=2)
        yield ray.get_runtime_context().gcs_address
        on_ray.shutdown()


@pytest.mark.slow
def test_ray_features_equal_the_local_ones_and_a_rerun_featurizes_only_new_images(cluster, tmp_path):
    images = make_dataset(tmp_path / "images" / "toy", {"horizontal": 12, "vertical": 12})
    for script in ("1_prepareData.py", "2_refineDNN.py"):
        run_script(script, tmp_path, *FAST)
    broken = images / "vertical" / "vertical_003.jpg"
    broken.write_bytes(broken.read_bytes()[:200])  # damaged after the split was made: featurization meets it
    proc = tmp_path / "proc" / "toy"
    result = run_script("3_runDNN.py", tmp_path, *FAST, "run_engine='onnxruntime'")
    skipped = next(line for line in result.stdout.splitlines() if line.startswith("skipped unreadable image"))
    assert str(broken) in skipped
    local = dict(np.load(proc / "features.npz"))
    shutil.rmtree(proc / "feature_cache")  # the Ray run computes every vector afresh

    ray_env = {"RAY_ADDRESS": cluster}
    result = run_script("3_runDNN.py", tmp_path, *FAST, "run_engine='ray'", env_extra=ray_env)
    assert "engine: Ray Data" in result.stdout
    # the broken image is reported as the local run reports it, and the run goes on
    assert skipped in result.stdout.splitlines()
    on_ray = dict(np.load(proc / "features.npz"))
    assert list(on_ray["paths"]) == list(local["paths"]) and len(local["paths"]) == 23
    assert np.abs(on_ray["features"] - local["features"]).max() < 1e-5
    assert str(on_ray["provenance"]) == str(local["provenance"]) and str(on_ray["feature_key"]) == str(local["feature_key"])

    for i in range(3):
        pattern_image("horizontal", 700 + i, 96).save(images / "horizontal" / f"new_{i}.jpg")
    run_script("1_prepareData.py", tmp_path, *FAST)
    err = run_script("3_runDNN.py", tmp_path, *FAST, "run_engine='ray'", env_extra=ray_env).stderr
    assert "featurizing (23 cached)" in err and "3/3" in err  # script 1 left the damaged image out this time
    # a RAY_ADDRESS that nothing answers on stops the run at once with one line, not after minutes of retries
    refused = run_script("3_runDNN.py", tmp_path, *FAST, "run_engine='ray'", check=False,
                         env_extra={"RAY_ADDRESS": "127.0.0.1:9"})
    assert refused.returncode == 1 and "error: nothing answers at RAY_ADDRESS=127.0.0.1:9" in refused.stderr


@pytest.mark.slow
def test_predict_on_ray_writes_the_local_csv(cluster, tmp_path):
    data_dir = tmp_path / "data"
    make_dataset(data_dir / "images" / "toy", {"horizontal": 10, "vertical": 10})
    for script in ("1_prepareData.py", "2_refineDNN.py", "3_runDNN.py", "4_trainSVM.py", "5_evaluate.py"):
        run_script(script, data_dir, *FAST)
    folder = unlabelled_folder(tmp_path / "new")
    run_script("predict.py", data_dir, *FAST, extra=[str(folder), "--out", str(tmp_path / "local.csv")])
    out = run_script("predict.py", data_dir, *FAST, extra=[str(folder), "--out", str(tmp_path / "ray.csv"), "--engine", "ray"],
                     env_extra={"RAY_ADDRESS": cluster}).stdout
    assert "predicted 6 image(s)" in out and "2 unreadable" in out
    assert load_csv(tmp_path / "ray.csv") == load_csv(tmp_path / "local.csv")


@pytest.mark.slow
def test_files_are_hashed_in_ray_tasks_not_by_the_driver(cluster, tmp_path, monkeypatch):
    """The driver receives 32 bytes per image: with its own hashing made to fail, the Ray engine still finds every
    digest (computed in Ray's worker processes), the features equal the local path's, and a rerun is all cached."""
    from libraries import artifacts, featurize, onnx_export
    from libraries.backbones import FeatureExtractor, build_classifier
    from libraries.on_ray import RayEngine

    make_dataset(tmp_path / "img", {"a": 5, "b": 5})
    paths = sorted((tmp_path / "img").rglob("*.jpg"))
    onnx_export.export_onnx(FeatureExtractor(build_classifier("efficientnet_lite0", 2, 64).eval()), tmp_path / "f.onnx", 64)
    local, _, _ = featurize.featurize(paths, featurize.OnnxEngine(tmp_path / "f.onnx"), 64,
                                      featurize.FeatureCache(tmp_path / "local"), batch_size=4, progress=False)
    local_digests = featurize.hash_files(paths, progress=False)

    def driver_must_not_read(path, *args):
        raise AssertionError(f"the driver read {path}")

    monkeypatch.setattr(artifacts, "file_digest", driver_must_not_read)
    monkeypatch.setattr(featurize, "safe_digest", driver_must_not_read)
    engine = RayEngine(tmp_path / "f.onnx")
    assert np.array_equal(engine.digests(paths, progress=False), local_digests)
    on_ray, rows, failures = featurize.featurize(paths, engine, 64, featurize.FeatureCache(tmp_path / "ray"), batch_size=4,
                                                 progress=False)
    assert list(rows) == list(range(10)) and not failures
    assert np.abs(np.asarray(on_ray) - np.asarray(local)).max() < 1e-5
