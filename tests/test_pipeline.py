"""Scripts 0-5 run as a user runs them: subprocesses on a dataset the test makes, with broken files in it."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import REPO, make_dataset, pattern_image, run_script

FAST = ["datasetName=toy", "rf_inputResolution=64", "svm_CVals=[0.01,1,100]", "run_mbSize=8", "track_boMlflow=False"]


def messy_dataset(data_dir):
    """Three classes (one with a single image), an empty class, and every kind of bad file."""
    images = data_dir / "images" / "toy"
    make_dataset(images, {"horizontal": 14, "vertical": 14}, size=96)
    (images / "checker").mkdir()
    pattern_image("checker", 5, 96).save(images / "checker" / "only_one.png")
    (images / "empty_class").mkdir()
    (images / "horizontal" / "zero.jpg").write_bytes(b"")
    (images / "vertical" / "notes.jpg").write_text("not an image")
    good = (images / "vertical" / "vertical_000.jpg").read_bytes()
    (images / "vertical" / "cut.jpg").write_bytes(good[: len(good) // 2])
    (images / "vertical" / ".DS_Store").write_bytes(b"\0\0")
    (images / "horizontal" / "Thumbs.db").write_bytes(b"\0\0")
    pattern_image("vertical", 77, 80).save(images / "vertical" / "Größe_ñ.JPG", "JPEG")
    Image.new("1", (12000, 12000)).save(images / "horizontal" / "bomb.png", optimize=True)
    # unusual but good images: all must be used, none reported
    pattern_image("horizontal", 40, 96).convert("CMYK").save(images / "horizontal" / "cmyk.jpg", "JPEG")
    pattern_image("horizontal", 41, 96).convert("P").save(images / "horizontal" / "palette.png")
    pattern_image("horizontal", 42, 96).convert("RGBA").save(images / "horizontal" / "rgba.png")
    deep = (np.asarray(pattern_image("vertical", 43, 96).convert("L")).astype(np.uint16) * 257)
    Image.fromarray(deep).save(images / "vertical" / "deep16.png")
    rotated = pattern_image("vertical", 44, 96)
    exif = rotated.getexif()
    exif[0x0112] = 6
    rotated.save(images / "vertical" / "rotated.jpg", "JPEG", exif=exif.tobytes())
    return images


def proc(data_dir):
    return data_dir / "proc" / "toy"


def assert_deployed_model_matches_pipeline(data_dir, kind, tta="none"):
    """The bundle, read as the service reads it, gives script 5's test probabilities, and so does the torch
    DeployedModel, within 1e-4; they sum to 1. With test-time augmentation ``tta``, inside the graph."""
    from libraries import bundle, export, layout
    from libraries.artifacts import load_npz
    from libraries.featurize import load_and_preprocess
    from libraries.model_io import load_model

    folder = proc(data_dir)
    deployed = bundle.read(folder)
    assert deployed.meta["classifier"] == kind and deployed.meta["test_time_augmentation"] == tta
    assert deployed.labels == json.loads((folder / "split.json").read_text())["labels"]
    expected = load_npz(folder / "test_scores.npz")
    batch = np.stack([load_and_preprocess(data_dir / "images" / "toy" / p, deployed.input_size) for p in expected["paths"]])
    onnx_probabilities = np.concatenate([deployed.run(batch[i:i + 3])[0] for i in range(0, len(batch), 3)])
    np.testing.assert_allclose(onnx_probabilities, expected["probabilities"], atol=1e-4)
    np.testing.assert_allclose(onnx_probabilities.sum(axis=1), 1.0, atol=1e-5)
    paths = layout.DatasetPaths(data_dir, "toy")
    classifier, _ = load_model(paths.model_meta)
    tta = deployed.meta["test_time_augmentation"]
    with torch.inference_mode():
        torch_probabilities, _ = export.DeployedModel(classifier, export.load_head(paths, kind), tta)(torch.from_numpy(batch))
    np.testing.assert_allclose(onnx_probabilities, torch_probabilities.numpy(), atol=1e-4)


def assert_refused(result, *fragments):
    """One line on stderr, exit 1, no traceback, naming what to rerun."""
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.mark.slow
def test_svm_pipeline_end_to_end_on_messy_data(tmp_path):
    images = messy_dataset(tmp_path)
    out = run_script("1_prepareData.py", tmp_path, *FAST).stdout
    assert "class folder" in out and "empty_class is empty and is ignored" in out
    assert "'checker' has 1 image(s) and none in the test set" in out
    for name, reason in (("zero.jpg", "empty file (0 bytes)"), ("notes.jpg", "not an image"), ("cut.jpg", "truncated"),
                         ("bomb.png", "12000x12000 = 144,000,000 pixels is above the limit")):
        assert f"{name}: {reason}" in out
    report = (proc(tmp_path) / "unreadable_images.tsv").read_text()
    assert report.count("\n") == 5 and "cut.jpg" in report and ".DS_Store" not in report and "Thumbs.db" not in out
    split = json.loads((proc(tmp_path) / "split.json").read_text())
    assert split["labels"] == ["checker", "horizontal", "vertical"]
    used = {p for p, _ in split["train"] + split["test"]}
    expected = {p.relative_to(images).as_posix() for p in images.rglob("*") if p.is_file()} - {
        "horizontal/zero.jpg", "vertical/notes.jpg", "vertical/cut.jpg", "horizontal/bomb.png", "vertical/.DS_Store",
        "horizontal/Thumbs.db"}
    assert used == expected  # nothing else was lost: the CMYK, palette, RGBA, 16-bit, rotated and non-ASCII ones are in
    assert len(used) == 1 + 14 + 14 + 3 + 3

    out = run_script("2_refineDNN.py", tmp_path, *FAST).stdout
    assert "used as it is at 64 px, without refinement" in out
    out = run_script("3_runDNN.py", tmp_path, *FAST).stdout
    assert "engine: onnxruntime" in out and "vectors of 1280 numbers" in out
    out = run_script("4_trainSVM.py", tmp_path, *FAST).stdout
    assert "<- chosen" in out and "cross-validation on the training split" in out and "Platt scaling" in out
    assert "class 'checker' has fewer than 2 training images" in out
    out = run_script("5_evaluate.py", tmp_path, *FAST).stdout
    assert "overall accuracy" in out and "class-averaged accuracy" in out
    metrics = json.loads((proc(tmp_path) / "metrics.json").read_text())
    assert metrics["overall_accuracy"] >= 0.8  # stripes are easy
    assert metrics["per_class_accuracy"]["checker"] is None
    for name in ("roc.png", "confusion_matrix.png", "svm_cv_accuracy.png", "svm.npz", "svm.json", "features.npz", "labels.json"):
        assert (proc(tmp_path) / name).stat().st_size > 0
    assert "exported the deployable bundle" in out
    assert_deployed_model_matches_pipeline(tmp_path, "svm", "flip")  # the default test-time augmentation

    # step 6: the exported model behind gunicorn, called with the first test image, as `make demo` does
    from service_helpers import Gunicorn

    server = Gunicorn(proc(tmp_path), workers=1)
    try:
        result = run_script("6_callWebservice.py", tmp_path, "datasetName=toy", extra=["--url", server.url + "/score", "-n", "2"])
    finally:
        server.stop()
    first_test = split["test"][0][0]
    assert f"image: {images / first_test}" in result.stdout
    scores = np.load(proc(tmp_path) / "test_scores.npz")
    probabilities = scores["probabilities"][list(scores["paths"]).index(first_test)]
    predicted = split["labels"][int(probabilities.argmax())]
    # the service says what script 5 predicted, with the same probability
    assert f"label: {predicted}, probability: {probabilities.max():.4f}" in result.stdout
    features = np.load(proc(tmp_path) / "features.npz")
    assert features["features"].shape == (len(split["train"]) + len(split["test"]), 1280)

    # idempotent: a second run reuses what is valid and gives the same answer, with the vectors in Parquet shards
    # this time (as for a large dataset), which scripts 4 and 5 read
    assert "up to date" in run_script("2_refineDNN.py", tmp_path, *FAST).stdout
    out = run_script("3_runDNN.py", tmp_path, *FAST, "run_shardAbove=10").stdout
    assert "in Parquet shards" in out and len(list((proc(tmp_path) / "features_parquet").glob("*.parquet"))) == 1
    run_script("4_trainSVM.py", tmp_path, *FAST)
    run_script("5_evaluate.py", tmp_path, *FAST)
    again = json.loads((proc(tmp_path) / "metrics.json").read_text())
    assert list(metrics["run"]["step_seconds"]) == ["split", "model", "features", "svm"]
    undated = lambda m: {**m, "run": {**m["run"], "date": None, "step_seconds": None}}  # noqa: E731  (when, how long)
    assert undated(again) == undated(metrics) and again["run"]["date"] >= metrics["run"]["date"]

    # adding images keeps every old image on its side, and featurizes only the new ones
    for i in range(8):
        pattern_image("horizontal", 500 + i, 96).save(images / "horizontal" / f"new_{i}.jpg")
    run_script("1_prepareData.py", tmp_path, *FAST)
    grown = json.loads((proc(tmp_path) / "split.json").read_text())
    assert {p for p, _ in split["test"]} <= {p for p, _ in grown["test"]}
    assert {p for p, _ in split["train"]} <= {p for p, _ in grown["train"]}
    new_test = {p for p, _ in grown["test"]} - {p for p, _ in split["test"]}
    assert len(new_test) == 2 and all(p.startswith("horizontal/new_") for p in new_test)  # 8 new at 0.75/0.25
    err = run_script("3_runDNN.py", tmp_path, *FAST).stderr
    total = len(split["train"]) + len(split["test"])
    assert f"featurizing ({total} cached)" in err and "8/8" in err


@pytest.mark.slow
def test_dnn_and_svm_on_refined_features(tmp_path):
    make_dataset(tmp_path / "images" / "toy", {"horizontal": 10, "vertical": 10, "checker": 10}, size=80)
    dnn = FAST + ["classifier=dnn", "rf_maxEpochs=2", "rf_mbSize=8", "rf_lrPerMb=[0.01,0.001]", "rf_valFraction=0.25",
                  "run_tta=flip"]
    run_script("1_prepareData.py", tmp_path, *dnn)
    out = run_script("2_refineDNN.py", tmp_path, *dnn).stdout
    assert "for 2 epoch(s) on cpu" in out and "epoch   2/2" in out and "about" in out  # the time left
    assert "augmentation 'dihedral': random flips and quarter turns" in out and "rf_augmentation='standard'" in out
    meta = json.loads((proc(tmp_path) / "model.json").read_text())
    assert meta["refined"] and len(meta["history"]) == 2 and meta["history"][1]["lr"] == 0.001
    state = torch.load(proc(tmp_path) / "model.pt", weights_only=True)
    assert state["head.weight"].shape == (3, 1280)
    assert (proc(tmp_path) / "refine_errors.png").is_file() and not (proc(tmp_path) / "refine_checkpoint.pt").exists()
    assert "averaging 2 views per image (run_tta='flip')" in run_script("3_runDNN.py", tmp_path, *dnn).stdout
    assert "no SVM to train" in run_script("4_trainSVM.py", tmp_path, *dnn).stdout
    run_script("5_evaluate.py", tmp_path, *dnn)
    metrics = json.loads((proc(tmp_path) / "metrics.json").read_text())
    assert metrics["classifier"] == "dnn" and set(metrics["per_class_accuracy"]) == {"checker", "horizontal", "vertical"}
    assert_deployed_model_matches_pipeline(tmp_path, "dnn", "flip")
    assert metrics["test_time_augmentation"] == "flip"
    assert "<tr><th>test-time augmentation</th><td>flip</td></tr>" in (proc(tmp_path) / "report.html").read_text()
    # the svm default given to a later script: refused, saying how to use the refined model without losing it
    assert_refused(run_script("3_runDNN.py", tmp_path, *FAST, check=False), "model.json holds a refined DNN",
                   "to use the refined one, --set classifier='dnn'", "the refined one is then lost")

    refined = FAST + ["classifier=svmDnnRefined", "rf_maxEpochs=2", "rf_mbSize=8", "rf_lrPerMb=[0.01,0.001]",
                      "rf_valFraction=0.25", "run_tta=dihedral"]
    assert "up to date" in run_script("2_refineDNN.py", tmp_path, *refined).stdout  # the same refined DNN serves both
    # features made with flip TTA are refused for dihedral until script 3 reruns (a model refined with the
    # default 'dihedral' augmentation: no warning that it never saw turned views)
    assert_refused(run_script("4_trainSVM.py", tmp_path, *refined, check=False), "run_tta", "3_runDNN.py")
    out = run_script("3_runDNN.py", tmp_path, *refined).stdout
    assert "averaging 8 views" in out and "never saw any" not in out
    warned = run_script("3_runDNN.py", tmp_path, *refined, "rf_augmentation=standard", check=False)
    assert_refused(warned, "rf_augmentation")  # the model was refined with 'dihedral': refused, not warned
    out = run_script("4_trainSVM.py", tmp_path, *refined).stdout
    # C and the calibration are chosen on the validation images, which the refined network never trained on
    assert "(on the 6 validation images the refined network did not train on)" in out
    svm_meta = json.loads((proc(tmp_path) / "svm.json").read_text())
    n_train = len(json.loads((proc(tmp_path) / "split.json").read_text())["train"])
    assert svm_meta["num_held_out_images"] == len(meta["validation"]) == 6
    assert svm_meta["num_train_images"] == n_train - 6  # fit on exactly the images the network trained on
    run_script("5_evaluate.py", tmp_path, *refined)
    metrics = json.loads((proc(tmp_path) / "metrics.json").read_text())
    assert metrics["classifier"] == "svmDnnRefined" and metrics["overall_accuracy"] >= 0.6
    assert_deployed_model_matches_pipeline(tmp_path, "svmDnnRefined", "dihedral")
    assert "validation images the refined network did not train on" in json.loads((proc(tmp_path) / "deploy.json").read_text())["score"]

    # the fixed model's features differ from the refined one's: switching back to 'svm' re-prepares, never mixes
    run_script("2_refineDNN.py", tmp_path, *FAST)
    run_script("3_runDNN.py", tmp_path, *FAST)
    caches = [d for d in (proc(tmp_path) / "feature_cache").iterdir() if list(d.glob("part-*.digests.npy"))]
    assert len(caches) == 3  # refined flip, refined dihedral, fixed


@pytest.mark.slow
def test_killed_refinement_resumes(tmp_path):
    make_dataset(tmp_path / "images" / "toy", {"horizontal": 8, "vertical": 8}, size=64)
    sets = FAST + ["classifier=dnn", "rf_maxEpochs=4", "rf_mbSize=4", "rf_numWorkers=0", "rf_augmentation=standard"]
    run_script("1_prepareData.py", tmp_path, *sets)
    env = {**os.environ, "DATA_DIR": str(tmp_path), "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, str(REPO / "scripts" / "2_refineDNN.py")] + [a for s in sets for a in ("--set", s)]
    process = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    checkpoint = proc(tmp_path) / "refine_checkpoint.pt"
    deadline = time.monotonic() + 300
    while not checkpoint.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert checkpoint.exists(), "no checkpoint was written before the kill"
    assert not (proc(tmp_path) / "model.pt").exists()
    out = run_script("2_refineDNN.py", tmp_path, *sets).stdout
    assert "resuming refinement after epoch" in out
    meta = json.loads((proc(tmp_path) / "model.json").read_text())
    assert [h["epoch"] for h in meta["history"]] == [1, 2, 3, 4]
    assert "augmentation 'dihedral'" not in out  # the reminder is for rotating runs only
    # 8-view test-time augmentation on a network that never saw a turned image: a warning, and the run goes on
    out = run_script("3_runDNN.py", tmp_path, *sets, "run_tta=dihedral").stdout
    assert "warning: run_tta='dihedral'" in out and "refined with rf_augmentation='standard'" in out and "wrote" in out


@pytest.mark.slow
def test_resnet18_from_a_local_weights_file(tmp_path):
    import torchvision.models as tvm

    torch.save(tvm.resnet18(weights=None).state_dict(), tmp_path / "resnet18.pth")
    make_dataset(tmp_path / "images" / "toy", {"horizontal": 8, "vertical": 8}, size=64)
    sets = FAST + ["rf_pretrainedModel=resnet18", f"rf_pretrainedWeights='{tmp_path / 'resnet18.pth'}'"]
    outputs = {script: run_script(script, tmp_path, *sets).stdout
               for script in ("1_prepareData.py", "2_refineDNN.py", "3_runDNN.py", "4_trainSVM.py", "5_evaluate.py")}
    assert "resnet18 from torchvision's ImageNet weights" in outputs["2_refineDNN.py"]
    assert "vectors of 512 numbers" in outputs["3_runDNN.py"]
    assert np.load(proc(tmp_path) / "features.npz")["features"].shape[1] == 512
    assert "overall accuracy" in outputs["5_evaluate.py"]


@pytest.mark.slow
def test_demo_data_install(tmp_path):
    out = run_script("0_downloadData.py", tmp_path).stdout
    assert "1803 functional, 821 defective" in out
    assert len(list((tmp_path / "images" / "elpvSolarCells" / "defective").iterdir())) == 821


def test_one_class_dataset_stops_before_work(tmp_path):
    make_dataset(tmp_path / "images" / "toy", {"only": 3})
    result = run_script("1_prepareData.py", tmp_path, "datasetName=toy", check=False)
    assert result.returncode == 1 and "Only one class ('only')" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "proc" / "toy" / "split.json").exists()


def test_a_misspelt_dataset_is_not_downloaded_and_the_datasets_there_are_named(tmp_path):
    make_dataset(tmp_path / "images" / "toy", {"a": 3, "b": 3})
    result = run_script("0_downloadData.py", tmp_path, "datasetName=tyo", check=False)
    assert result.returncode == 1 and not (tmp_path / "images" / "tyo").exists()
    assert f"the datasets in {tmp_path / 'images'} are toy; pick one with --set datasetName=" in result.stderr
    assert "holds the images" in run_script("0_downloadData.py", tmp_path, "datasetName=toy").stdout


def test_later_step_without_earlier_one_says_which_to_run(tmp_path):
    make_dataset(tmp_path / "images" / "toy", {"a": 3, "b": 3})
    result = run_script("3_runDNN.py", tmp_path, "datasetName=toy", check=False)
    assert result.returncode == 1 and "run scripts/1_prepareData.py first" in result.stderr


@pytest.mark.slow
def test_stale_artifacts_are_refused_never_used(tmp_path):
    """Each way a newcomer mixes old and new artifacts ends in one line naming the script to rerun, or in correct
    results; never in wrong ones."""
    import torchvision.models as tvm

    images = make_dataset(tmp_path / "images" / "toy", {"horizontal": 10, "vertical": 10}, size=64)
    for script in ("1_prepareData.py", "2_refineDNN.py", "3_runDNN.py", "4_trainSVM.py", "5_evaluate.py"):
        run_script(script, tmp_path, *FAST)
    metrics = (proc(tmp_path) / "metrics.json").read_text()

    # svmDnnRefined on an unrefined model: an error that says to refine first
    refined = FAST + ["classifier=svmDnnRefined"]
    for script in ("3_runDNN.py", "4_trainSVM.py", "5_evaluate.py"):
        assert_refused(run_script(script, tmp_path, *refined, check=False),
                       "classifier='svmDnnRefined' needs a refined DNN", "scripts/2_refineDNN.py")
    assert (proc(tmp_path) / "metrics.json").read_text() == metrics  # nothing was written

    # a changed ratioTrainTest given to script 5 alone, then to scripts 1 and 5
    assert_refused(run_script("5_evaluate.py", tmp_path, *FAST, "ratioTrainTest=0.5", check=False),
                   "split.json was made with ratioTrainTest=0.75, but ratioTrainTest is 0.5 now", "scripts/1_prepareData.py")
    run_script("1_prepareData.py", tmp_path, *FAST, "ratioTrainTest=0.5")
    assert_refused(run_script("5_evaluate.py", tmp_path, *FAST, "ratioTrainTest=0.5", check=False),
                   "features.npz is out of date: split.json changed", "rerun scripts/3_runDNN.py")
    run_script("1_prepareData.py", tmp_path, *FAST)  # back to 0.75: the same split as before, bit for bit
    assert "overall accuracy" in run_script("5_evaluate.py", tmp_path, *FAST).stdout

    # another backbone in script 2, then script 5 without script 3
    torch.save(tvm.resnet18(weights=None).state_dict(), tmp_path / "resnet18.pth")
    resnet = FAST + ["rf_pretrainedModel=resnet18", f"rf_pretrainedWeights='{tmp_path / 'resnet18.pth'}'"]
    run_script("2_refineDNN.py", tmp_path, *resnet)
    assert_refused(run_script("5_evaluate.py", tmp_path, *resnet, check=False),
                   "features.npz is out of date: model.json changed", "rerun scripts/3_runDNN.py")
    assert_refused(run_script("5_evaluate.py", tmp_path, *FAST, check=False),
                   "model.json was made with rf_pretrainedModel='resnet18', but rf_pretrainedModel is 'efficientnet_lite0' now",
                   "rerun scripts/2_refineDNN.py")
    run_script("2_refineDNN.py", tmp_path, *FAST)

    # a third class, then scripts 1, 4 and 5 without 3: refused until 3 runs; then the bundle has three labels
    make_dataset(images, {"horizontal": 0, "vertical": 0, "checker": 10}, size=64)
    run_script("1_prepareData.py", tmp_path, *FAST)
    for script in ("4_trainSVM.py", "5_evaluate.py"):
        assert_refused(run_script(script, tmp_path, *FAST, check=False),
                       "features.npz is out of date: split.json changed", "rerun scripts/3_runDNN.py")
    for script in ("3_runDNN.py", "4_trainSVM.py"):
        run_script(script, tmp_path, *FAST)
    out = run_script("5_evaluate.py", tmp_path, *FAST).stdout
    assert "checker" in out and " n/a" not in out.split("classifier:")[0]
    metrics = json.loads((proc(tmp_path) / "metrics.json").read_text())
    assert metrics["labels"] == ["checker", "horizontal", "vertical"] and metrics["per_class_accuracy"]["checker"] is not None
    from libraries import bundle

    assert bundle.read(proc(tmp_path)).labels == metrics["labels"]


@pytest.mark.slow
def test_refinement_never_reads_the_test_set(tmp_path):
    """Refine twice from the same split: once as is, once with every test image deleted after script 1. The
    refined weights and the history are the same: nothing before script 5 looks at the test set."""
    import shutil

    sets = FAST + ["classifier=dnn", "rf_maxEpochs=2", "rf_mbSize=8", "rf_numWorkers=0", "rf_valFraction=0.25"]
    make_dataset(tmp_path / "a" / "images" / "toy", {"horizontal": 10, "vertical": 10}, size=64)
    run_script("1_prepareData.py", tmp_path / "a", *sets)
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    split = json.loads((tmp_path / "b" / "proc" / "toy" / "split.json").read_text())
    for rel, _ in split["test"]:
        (tmp_path / "b" / "images" / "toy" / rel).unlink()
    outputs = {side: run_script("2_refineDNN.py", tmp_path / side, *sets).stdout for side in ("a", "b")}
    n_train = len(split["train"])  # 15 of 20 (near-duplicate stripes go to one side together)
    assert f"{n_train - 4} training and 4 validation images" in outputs["a"]  # a quarter of each class held out
    metas = {side: json.loads((tmp_path / side / "proc" / "toy" / "model.json").read_text()) for side in ("a", "b")}
    results = lambda meta: [{k: v for k, v in h.items() if k != "seconds"} for h in meta["history"]]  # noqa: E731
    assert results(metas["a"]) == results(metas["b"]) and metas["a"]["kept_epoch"] == metas["b"]["kept_epoch"]
    assert not set(metas["a"]["validation"]) & {rel for rel, _ in split["test"]}
    weights = {side: torch.load(tmp_path / side / "proc" / "toy" / "model.pt", weights_only=True) for side in ("a", "b")}
    for name, tensor in weights["a"].items():
        torch.testing.assert_close(tensor, weights["b"][name], rtol=0, atol=0, msg=name)


@pytest.mark.slow
def test_make_run_takes_a_generated_dataset_to_the_report(tmp_path):
    make_dataset(tmp_path / "images" / "mine", {"horizontal": 10, "vertical": 10}, size=64)
    sets = "--set datasetName=mine --set rf_inputResolution=64 --set track_boMlflow=False"
    result = subprocess.run(["make", "run", f"SET={sets}"], cwd=REPO, capture_output=True, text=True, timeout=900,
                            env={**os.environ, "DATA_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    report_path = tmp_path / "proc" / "mine" / "report.html"
    assert report_path.is_file() and f"report:  {report_path}" in result.stdout
    assert f'make serve SET="{sets}"' in result.stdout and "scripts/predict.py FOLDER" in result.stdout
    assert "downloading" not in result.stdout  # the images were there: script 0 is not run
