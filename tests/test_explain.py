"""Class activation maps: on images whose class is decided by one marked square, the map of that class peaks
inside the square, for the SVM's exact CAM and for Grad-CAM of the refined network."""
import numpy as np
import pytest
from PIL import Image

import PARAMETERS
from libraries import explain, layout, settings
from libraries.artifacts import load_csv, load_json

from conftest import run_script

SIZE, SQUARE, CELL = 160, 64, 32  # Lite0's last map is 5 x 5 at 160 px: one cell is 32 px


def marked_dataset(data_dir) -> dict:
    """'marked' images carry a red square at a random place on noise, 'plain' ones do not; returns the squares."""
    boxes = {}
    for label in ("marked", "plain"):
        (data_dir / "images" / "marks" / label).mkdir(parents=True)
        for i in range(20):
            rng = np.random.default_rng(1000 * (label == "plain") + i)
            image = rng.normal(120, 30, (SIZE, SIZE, 3))
            if label == "marked":
                y, x = (int(v) for v in rng.integers(0, SIZE - SQUARE, 2))
                image[y:y + SQUARE, x:x + SQUARE] = (230, 40, 40)
                boxes[f"{label}/{i:03d}.png"] = (y, x)
            Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(data_dir / "images" / "marks" / label / f"{i:03d}.png")
    return boxes


def peaks_inside(data_dir, boxes, sets) -> tuple[int, int]:
    P = settings.load(PARAMETERS, [f"DATA_DIR={data_dir}", *sets])
    paths = layout.dataset_paths(P)
    explainer = explain.Explainer.from_paths(paths, vars(P))
    split = load_json(paths.split)
    test = [p for p, _ in split["test"] if p in boxes]
    images = np.stack([explainer.load(paths.images / p) for p in test])
    maps = explainer.maps(images, [split["labels"].index("marked")] * len(test))
    assert maps.shape == (len(test), SIZE, SIZE) and maps.min() >= 0 and maps.max() <= 1
    inside = 0
    for p, cam in zip(test, maps):
        (y, x), (row, column) = boxes[p], explain.peak(cam)
        # inside the square at the map's own resolution: the 32-px cell of the peak overlaps the square
        top, left = row // CELL * CELL, column // CELL * CELL
        inside += top < y + SQUARE and y < top + CELL and left < x + SQUARE and x < left + CELL
    overlay = explain.overlay(images[0], maps[0])
    assert overlay.shape == (SIZE, SIZE, 3) and overlay.dtype == np.uint8
    return inside, len(test)


@pytest.mark.slow
@pytest.mark.parametrize("classifier", ["svm", "dnn"])
def test_the_map_of_the_class_peaks_inside_the_marked_square(tmp_path, classifier):
    boxes = marked_dataset(tmp_path)
    sets = ["datasetName=marks", "track_boMlflow=False", f"classifier={classifier}", "svm_CVals=[0.01,1,100]",
            f"rf_inputResolution={SIZE}",
            "rf_maxEpochs=4", "rf_mbSize=8", "rf_numWorkers=0", "rf_valFraction=0", "rf_trainLastBlocks=3",
            "rf_augmentation=standard"]
    for script in ("1_prepareData.py", "2_refineDNN.py", "3_runDNN.py", "4_trainSVM.py", "5_evaluate.py"):
        run_script(script, tmp_path, *sets)
    inside, total = peaks_inside(tmp_path, boxes, sets)
    assert total >= 4 and inside == total, (inside, total)
    # predict.py --cam writes one overlay per readable image, named by its row in the CSV, at the image's proportions;
    # it explains what script 5 evaluated without the training settings repeated (a refined dnn included)
    folder = tmp_path / "images" / "marks" / "marked"
    (tmp_path / "broken.png").write_bytes(b"no")
    Image.open(folder / "000.png").crop((0, 0, SIZE, SIZE // 2)).save(tmp_path / "wide.png")
    out = run_script("predict.py", tmp_path, "datasetName=marks", extra=[
        str(tmp_path / "broken.png"), str(tmp_path / "wide.png"), str(folder), "--out", str(tmp_path / "p.csv"),
        "--cam", str(tmp_path / "cams")]).stdout
    rows = load_csv(tmp_path / "p.csv")
    written = sorted((tmp_path / "cams").glob("*.png"))
    assert len(written) == 21 and "wrote 21 class activation map(s)" in out
    assert written[0].name == f"0002_wide_{rows[1]['label']}.png" and written[1].name == f"0003_000_{rows[2]['label']}.png"
    assert Image.open(written[0]).size == (SIZE, SIZE // 2) and Image.open(written[1]).size == (SIZE, SIZE)
    # showResults' toggle draws the map over the image
    from libraries.widgets import ResultBrowser

    P = settings.load(PARAMETERS, [f"DATA_DIR={tmp_path}", *sets])
    paths = layout.dataset_paths(P)
    browser = ResultBrowser(paths, params=vars(P), explainer=explain.Explainer.from_paths(paths, vars(P)))
    plain = browser.image.value
    browser.cam.value = True
    assert browser.image.value != plain and browser.image.value[:2] == b"\xff\xd8"
