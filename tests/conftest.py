"""Test data made by the tests themselves: small images of easily told-apart classes, and broken files."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parent.parent


def pattern_image(kind: str, index: int, size: int = 96) -> Image.Image:
    """A noisy striped image: 'horizontal', 'vertical' or 'checker' stripes, varied by ``index``."""
    rng = np.random.default_rng(index)
    period = 8 + index % 5
    y, x = np.mgrid[0:size, 0:size]
    if kind == "horizontal":
        base = (y // period) % 2
    elif kind == "vertical":
        base = (x // period) % 2
    else:
        base = ((x // period) + (y // period)) % 2
    colour = rng.integers(60, 255, size=3)
    array = base[:, :, None] * colour + rng.normal(0, 20, (size, size, 3))
    return Image.fromarray(np.clip(array, 0, 255).astype(np.uint8))


def make_dataset(root: Path, counts: dict[str, int], size: int = 96, fmt: str = "JPEG") -> Path:
    """Write ``counts[label]`` images per class folder under ``root``; return ``root``."""
    kinds = ["horizontal", "vertical", "checker"]
    for k, (label, n) in enumerate(counts.items()):
        folder = root / label
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            suffix = ".jpg" if fmt == "JPEG" else ".png"
            pattern_image(kinds[k % 3], 1000 * k + i, size).save(folder / f"{label}_{i:03d}{suffix}", fmt)
    return root


def unlabelled_folder(folder: Path) -> Path:
    """New images to predict: 3 horizontal JPEGs in ``folder``, 3 vertical PNGs in ``folder/deeper``, a broken JPEG
    and an empty PNG."""
    (folder / "deeper").mkdir(parents=True)
    for i in range(3):
        pattern_image("horizontal", 8000 + i).save(folder / f"h{i}.jpg")
        pattern_image("vertical", 8100 + i).save(folder / "deeper" / f"v{i}.png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 half a jpeg")
    (folder / "empty.png").write_bytes(b"")
    return folder


@pytest.fixture
def small_dataset(tmp_path) -> Path:
    """DATA_DIR with images/toy/{horizontal,vertical}/ holding 12 JPEGs each."""
    make_dataset(tmp_path / "images" / "toy", {"horizontal": 12, "vertical": 12})
    return tmp_path


def run_script(name: str, data_dir: Path, *sets: str, check: bool = True, timeout: float = 600, env_extra=None,
               extra: list[str] = ()):
    """Run scripts/<name> as a user would, with DATA_DIR, ``--set`` overrides and ``extra`` arguments;
    return the CompletedProcess."""
    env = {**os.environ, "DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1", **(env_extra or {})}
    cmd = [sys.executable, str(REPO / "scripts" / name)] + [a for s in sets for a in ("--set", s)] + list(extra)
    result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{name} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


@pytest.fixture
def chromium():
    """A headless Chromium (Debian's chromium + chromium-driver) driven by Selenium; skips visibly without them."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not (browser and driver_path):
        pytest.skip("Debian's chromium and chromium-driver are not installed (apt-get install chromium chromium-driver); "
                    "'make test' installs them where it can")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(flag)
    # tcmalloc, which `make test` preloads for torch, is not for Chromium (it brings its own allocator)
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    driver = webdriver.Chrome(service=Service(executable_path=driver_path, env=env), options=options)
    yield driver
    driver.quit()


FAKE_EVALUATION_SETS = ("ratioTrainTest=0.5", "svm_CVals=[1.0]", "svm_cvFolds=2")


def fake_evaluation(data_dir: Path, counts: dict[str, int], dataset: str = "toy", size: int = 48):
    """A DATA_DIR as scripts 1-5 leave it, made in a second: a real split, features (random vectors), a calibrated
    SVM trained on them, and the evaluation of the test images, each artifact with its provenance."""
    import PARAMETERS
    from libraries import evaluation, featurize, layout, provenance, results, scoring, settings, svm
    from libraries.artifacts import save_json
    from libraries.dataset import find_classes, make_split

    P = settings.load(PARAMETERS, [f"datasetName={dataset}", f"DATA_DIR={str(data_dir)!r}", *FAKE_EVALUATION_SETS])
    params, paths = vars(P), layout.dataset_paths(P)
    make_dataset(paths.images, counts, size=size)
    classes, _ = find_classes(paths.images)
    split, _ = make_split(classes, paths.images, 0.5, seed=0)
    split["provenance"] = provenance.record("split", params, paths)
    save_json(paths.split, split)
    save_json(paths.model_meta, {"refined": False, "provenance": provenance.record("model", params, paths)})
    rows = [(p, l, "train") for p, l in split["train"]] + [(p, l, "test") for p, l in split["test"]]
    rng = np.random.default_rng(0)
    labels = np.array([l for _, l, _ in rows])
    features = (rng.normal(0, 1, (len(rows), 8)) + 1.5 * np.eye(8)[labels]).astype(np.float32)
    featurize.save_features(paths.features, features, [p for p, _, _ in rows], labels, [s for _, _, s in rows], "fake",
                            provenance.record("features", params, paths))
    subset = np.array([s for _, _, s in rows])
    model, table = svm.train(features, labels, subset, len(split["labels"]), P.svm_CVals, folds=P.svm_cvFolds)
    svm.save(paths.svm, paths.svm_meta, model, table, True, split["labels"], provenance.record("svm", params, paths))
    test = subset == "test"
    probabilities, raw = scoring.score(features[test], scoring.svm_head(model, True))
    metrics = evaluation.compute_metrics(labels[test], probabilities, split["labels"], "svm")
    metrics.update({"score": scoring.SCORE_MEANING["svm"], "backbone": "efficientnet_lite0", "input_size": 224,
                    "refined": False, "svm_C": 1.0, "provenance": provenance.record("evaluation", params, paths)})
    results.save(paths, np.array([p for p, _, s in rows if s == "test"]), labels[test], probabilities, raw, metrics)
    return paths
