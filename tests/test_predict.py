"""Predicting files with the deployed bundle: scripts/predict.py equals the service, script 5's test_predictions.csv
equals its scores, and scripts/toLabel.py ranks images between two classes above clean ones. One real pipeline
run (scripts 1-5) serves the module."""
import base64
import json

import numpy as np
import pytest
from PIL import Image

from libraries import annotate, predict
from libraries.artifacts import load_csv

from pathlib import Path

from conftest import make_dataset, pattern_image, run_script, unlabelled_folder

FAST = ["datasetName=toy", "rf_inputResolution=64", "svm_CVals=[0.01,1,100]", "run_mbSize=8", "track_boMlflow=False"]


def test_margin_and_entropy():
    margin, entropy = predict.margin_and_entropy(np.array([[0.5, 0.5], [1.0, 0.0]]))
    assert np.allclose(margin, [0.0, 1.0]) and np.allclose(entropy, [1.0, 0.0], atol=1e-6)


def test_collect_files_takes_folders_files_and_globs(tmp_path):
    make_dataset(tmp_path, {"a": 2, "b": 2})
    (tmp_path / "a" / ".DS_Store").write_bytes(b"x")
    files, missing = predict.collect_files([tmp_path / "a", tmp_path / "b" / "b_000.jpg", str(tmp_path / "*" / "b_00*.jpg"),
                                            tmp_path / "nothing"])
    assert [f.name for f in files] == ["a_000.jpg", "a_001.jpg", "b_000.jpg", "b_001.jpg"]
    assert missing == [f"{tmp_path / 'nothing'}: no such file or folder"]


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """DATA_DIR after scripts 1-5 on a two-class toy dataset (classifier svm)."""
    data_dir = tmp_path_factory.mktemp("pipeline")
    make_dataset(data_dir / "images" / "toy", {"horizontal": 16, "vertical": 16})
    for script in ("1_prepareData.py", "2_refineDNN.py", "3_runDNN.py", "4_trainSVM.py", "5_evaluate.py"):
        run_script(script, data_dir, *FAST)
    return data_dir


@pytest.mark.slow
def test_predict_a_folder_equals_the_service_and_lists_broken_files(evaluated, tmp_path):
    from libraries.service import create_app

    folder = unlabelled_folder(tmp_path / "new")
    out = run_script("predict.py", evaluated, *FAST, extra=[str(folder), "--out", str(tmp_path / "p.csv")]).stdout
    assert "predicted 6 image(s) at" in out and "2 unreadable" in out and "done in" in out
    assert "unreadable: " + str(folder / "broken.jpg") in out and "unreadable: " + str(folder / "empty.png") in out
    rows = load_csv(tmp_path / "p.csv")
    assert list(rows[0]) == ["path", "label", "probability", "error", "p_horizontal", "p_vertical"]
    assert len(rows) == 8
    client = create_app(evaluated / "proc" / "toy").test_client()
    for row in rows:
        if row["error"]:
            assert row["label"] == row["probability"] == row["p_horizontal"] == ""
            continue
        body = {"input_df": [{"image base64 string": base64.b64encode(open(row["path"], "rb").read()).decode()}]}
        answer = client.post("/score", json=body).get_json()
        assert answer["label"] == row["label"]
        for label in ("horizontal", "vertical"):
            assert abs(answer["allScores"][label] - float(row[f"p_{label}"])) < 1e-4
    assert {r["label"] for r in rows if Path(r["path"]).name.startswith("h") and not r["error"]} == {"horizontal"}
    # JSON on request, the same rows
    run_script("predict.py", evaluated, *FAST, extra=[str(folder / "*.jpg"), "--json", "--out", str(tmp_path / "p.json")])
    as_json = json.loads((tmp_path / "p.json").read_text())
    assert sorted(r["path"] for r in as_json) == sorted(r["path"] for r in rows if r["path"].endswith(".jpg") and "deeper" not in r["path"])
    broken = next(r for r in as_json if r["error"])
    assert broken["label"] is None and broken["probability"] is None  # JSON's null for an empty field
    # Parquet when the name says so (for big outputs): the CSV's rows, with nulls for empty fields
    import pyarrow.parquet as pq

    run_script("predict.py", evaluated, *FAST, extra=[str(folder), "--out", str(tmp_path / "p.parquet")])
    table = pq.read_table(tmp_path / "p.parquet")
    assert table.column_names == list(rows[0]) and table.num_rows == len(rows)
    for row, stored in zip(rows, table.to_pylist()):
        assert stored == {k: (None if v == "" else float(v) if k.startswith("p") and k != "path" else v)
                          for k, v in row.items()}


@pytest.mark.slow
def test_predict_refuses_a_folder_as_out_and_no_paths_before_any_work(evaluated, tmp_path):
    result = run_script("predict.py", evaluated, *FAST, check=False, extra=[str(tmp_path), "--out", str(tmp_path)])
    assert result.returncode == 1 and "model:" not in result.stdout
    assert f"error: --out {tmp_path} is a folder: name the file to write, e.g. --out {tmp_path / 'predictions.csv'}" in result.stderr
    result = run_script("predict.py", evaluated, *FAST, check=False)
    assert result.returncode == 1 and "name at least one image file, folder or glob pattern" in result.stderr
    result = run_script("predict.py", evaluated, *FAST, check=False, extra=[str(tmp_path), "--json", "--out",
                                                                           str(tmp_path / "p.parquet")])
    assert result.returncode == 1 and "--json writes JSON, but --out" in result.stderr and "model:" not in result.stdout
    run_script("predict.py", evaluated, *FAST, extra=[str(evaluated / "images"), "--out", str(tmp_path / "p.json")])
    assert json.loads((tmp_path / "p.json").read_text())[0]["path"]  # the name's ending picks JSON
    assert "datasetName" in run_script("predict.py", evaluated, *FAST, extra=["--print-params"]).stdout
    result = run_script("predict.py", evaluated, *FAST, check=False, extra=[str(tmp_path), "--model-dir",
                                                                           str(evaluated / "proc" / "toy"), "--cam", "x"])
    assert result.returncode == 1 and "model:" not in result.stdout and "--cam needs the dataset's trained network" in result.stderr


@pytest.mark.slow
def test_script_5_writes_the_test_predictions(evaluated):
    proc = evaluated / "proc" / "toy"
    rows = load_csv(proc / "test_predictions.csv")
    scores = np.load(proc / "test_scores.npz")
    labels = json.loads((proc / "labels.json").read_text())
    assert [r["path"] for r in rows] == list(scores["paths"])
    assert [r["true_label"] for r in rows] == [labels[k] for k in scores["labels"]]
    probabilities = np.array([[float(r[f"p_{label}"]) for label in labels] for r in rows])
    np.testing.assert_allclose(probabilities, scores["probabilities"], atol=1e-6)
    assert "test_predictions.csv" in (proc / "report.html").read_text()


@pytest.mark.slow
def test_images_between_two_classes_rank_first(evaluated, tmp_path):
    data_dir = evaluated
    new = tmp_path / "unlabelled"
    (new / "sub").mkdir(parents=True)
    for i in range(6):
        pattern_image("horizontal", 5000 + i).save(new / f"clean_h{i}.jpg")
        pattern_image("vertical", 6000 + i).save(new / "sub" / f"clean_v{i}.jpg")
    for i in range(4):  # half one class, half the other
        h, v = (np.asarray(pattern_image(kind, 7000 + i), np.float32) for kind in ("horizontal", "vertical"))
        Image.fromarray(((h + v) / 2).astype(np.uint8)).save(new / f"between{i}.jpg")
    (new / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    out = run_script("toLabel.py", data_dir, *FAST, extra=[str(new)]).stdout
    assert "unreadable: " in out and "broken.jpg" in out and "ranked 16 image(s)" in out
    rows = load_csv(data_dir / "proc" / "toy" / "to_label.csv")
    assert list(rows[0])[:7] == ["rank", "path", "label", "probability", "error", "margin", "entropy"]
    assert {"p_horizontal", "p_vertical"} <= set(rows[0])
    assert len(rows) == 17 and rows[-1]["path"].endswith("broken.jpg") and rows[-1]["error"]
    first = [r["path"].rsplit("/", 1)[-1] for r in rows[:4]]
    assert all(name.startswith("between") for name in first), [(r["path"], r["margin"]) for r in rows]
    margins = [float(r["margin"]) for r in rows[:16]]
    assert margins == sorted(margins)

    # a click in the labelling view moves the file into its class folder, logged; undo moves it back
    from libraries.widgets import LabelQueue

    proc = data_dir / "proc" / "toy"
    queue = LabelQueue(proc / "to_label.csv", data_dir / "images" / "toy", proc / "split.json", proc / "annotation_log.jsonl")
    assert queue.position.value == "page 1 of 2 (16 images to label)"
    card, buttons = queue.cards[0]
    source = new / first[0]
    buttons[[b.description for b in buttons].index("vertical")].click()
    entry = annotate.read_log(proc / "annotation_log.jsonl")[-1]
    assert entry["action"] == "label" and entry["new_path"] == f"vertical/{first[0]}" and not source.exists()
    assert (data_dir / "images" / "toy" / "vertical" / first[0]).is_file()
    assert queue.position.value.endswith("(15 images to label)")
    queue.undo.click()
    assert source.is_file() and not (data_dir / "images" / "toy" / "vertical" / first[0]).exists()
    assert queue.position.value.endswith("(16 images to label)")


@pytest.mark.slow
def test_the_report_of_a_real_run_has_its_header_and_every_image(evaluated, chromium, tmp_path):
    from selenium.webdriver.common.by import By

    proc = evaluated / "proc" / "toy"
    metrics = json.loads((proc / "metrics.json").read_text())
    run = metrics["run"]
    assert run["images"]["test"] == metrics["num_test_images"] and run["code_version"] != ""
    chromium.set_window_size(1400, 1000)
    chromium.get((proc / "report.html").as_uri())
    header = chromium.find_element(By.ID, "summary").text
    counts = f"{run['images']['train']} / {run['images']['validation'] or 'none'} / {run['images']['test']}"
    for expected in ("made", run["date"], "code", run["code_version"], "dataset toy", "classifier svm",
                     "efficientnet_lite0 at 64 px", "SVM C", counts, "time per step 1 split",
                     "2 network (fixed)", "3 features", "4 SVM"):
        assert expected in header, (expected, header)
    loaded = chromium.execute_script("return Array.from(document.images).map(i => i.complete && i.naturalWidth > 0)")
    assert len(loaded) >= 4 and all(loaded)  # ROC, confusion matrix, SVM plot, feature map, thumbnails
    plots = chromium.execute_script("return Array.from(document.querySelectorAll('.plotbox')).map(f => f.getBoundingClientRect().top)")
    assert len(plots) >= 3 and len(set(round(t) for t in plots)) < len(plots)  # side by side on a wide window
    assert chromium.save_screenshot(str(tmp_path / "report.png")) and (tmp_path / "report.png").stat().st_size > 20_000
