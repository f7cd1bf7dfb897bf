"""Label suspects: planted label errors come out on top, from features and from a real run of scripts 1-4."""
import json
import shutil

import numpy as np
import pytest

from libraries import label_issues, report, svm
from libraries.errors import DatasetError

from conftest import make_dataset, run_script

FAST = ["datasetName=toy", "rf_inputResolution=64", "svm_CVals=[0.01,1,100]", "run_mbSize=8", "track_boMlflow=False"]


def blobs(n_per_class: int, num_classes: int, dim: int = 32, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1, (num_classes, dim)) * 3
    labels = np.repeat(np.arange(num_classes), n_per_class)
    return (centres[labels] + rng.normal(0, 1, (len(labels), dim))).astype(np.float32), labels


def flip(labels: np.ndarray, fraction: float, num_classes: int, seed: int = 1):
    rng = np.random.default_rng(seed)
    flipped = rng.choice(len(labels), round(fraction * len(labels)), replace=False)
    noisy = labels.copy()
    noisy[flipped] = (labels[flipped] + rng.integers(1, num_classes, len(flipped))) % num_classes
    return noisy, flipped


def test_planted_label_errors_rank_first_from_features():
    x, y = blobs(60, 3)
    noisy, flipped = flip(y, 0.10, 3)
    paths = [f"img{i}" for i in range(len(y))]
    rows = label_issues.find(x, noisy, paths, ["a", "b", "c"], c=1.0)
    top = {r["path"] for r in rows[:round(0.15 * len(rows))]}
    found = sum(paths[i] in top for i in flipped)
    assert found >= 0.8 * len(flipped), (found, len(flipped))
    assert [r["quality"] for r in rows] == sorted(r["quality"] for r in rows)
    flagged = {r["path"] for r in rows if r["label_issue"]}
    assert {paths[i] for i in flipped} & flagged
    for r in rows[:len(flipped)]:  # the suggested label of a planted error is its true class
        i = paths.index(r["path"])
        if i in flipped:
            assert r["suggested_label"] == "abc"[y[i]] and r["given_label"] == "abc"[noisy[i]]


def test_out_of_fold_probabilities_never_score_a_row_with_a_model_that_saw_it():
    x, y = blobs(20, 2, seed=3)
    y_noisy = y.copy()
    y_noisy[0] = 1  # a clear error: in-sample, a flexible model could memorise it; out of fold it cannot
    p = svm.out_of_fold_probabilities(svm.l2_normalize(x), y_noisy, 100.0, 2)
    assert p.shape == (40, 2) and np.allclose(p.sum(1), 1, atol=1e-5)
    assert p[0, 1] < 0.5


def test_a_class_smaller_than_the_folds_is_refused_with_a_message():
    x, y = blobs(10, 2)
    y[:7] = 2  # class 'c' gets 7, class 'a' 3 images
    with pytest.raises(DatasetError, match=r"class 'a' has 3 training image\(s\), fewer than the 5 that out-of-fold probabilities need \(5 folds"):
        label_issues.find(x, y, [str(i) for i in range(len(y))], ["a", "b", "c"], c=1.0)


@pytest.mark.slow
def test_planted_label_errors_in_a_real_run_of_scripts_1_to_4(tmp_path):
    images = make_dataset(tmp_path / "images" / "toy", {"horizontal": 40, "vertical": 40, "checker": 40})
    classes = ["horizontal", "vertical", "checker"]
    test_list = [f"{c}/{c}_{i:03d}.jpg" for c in classes for i in range(30, 40)]
    (images / "dedicatedTestImages.tsv").write_text("\n".join(test_list) + "\n")
    rng = np.random.default_rng(0)
    training = [(c, i) for c in classes for i in range(30)]
    planted = []
    for k in rng.choice(len(training), 9, replace=False):  # 10% of the 90 training images get a wrong class
        c, i = training[k]
        wrong = classes[(classes.index(c) + 1 + int(rng.integers(2))) % 3]
        shutil.move(images / c / f"{c}_{i:03d}.jpg", images / wrong / f"moved_{c}_{i:03d}.jpg")
        planted.append(f"{wrong}/moved_{c}_{i:03d}.jpg")
    for script in ("1_prepareData.py", "2_refineDNN.py", "3_runDNN.py"):
        run_script(script, tmp_path, *FAST)
    out = run_script("4_trainSVM.py", tmp_path, *FAST).stdout
    assert "label suspects: cleanlab calls" in out
    proc = tmp_path / "proc" / "toy"
    rows = label_issues.read_csv(proc / "suspects.csv")
    assert len(rows) == 90 and list(rows[0]) == list(label_issues.CSV_COLUMNS)
    top = {r["path"] for r in rows[:round(0.15 * len(rows))]}
    assert sum(p in top for p in planted) >= 0.8 * len(planted), (planted, rows[:14])
    assert (proc / "feature_map.png").stat().st_size > 10_000
    meta = json.loads((proc / "svm.json").read_text())
    assert meta["suspects"]["file"] == "suspects.csv" and meta["suspects"]["label_issues"] >= 1

    # the report shows the suspects (thumbnails first), the map and the duplicate count
    run_script("5_evaluate.py", tmp_path, *FAST)
    page = (proc / "report.html").read_text()
    assert 'id="data-health"' in page and 'id="feature-map"' in page and "near-duplicates" in page.lower()
    gallery = page[page.index('id="suspects"'):]
    assert f"<code>{report.breakable(rows[0]['path'])}</code>" in gallery and f"label issues" in gallery

    # excluding the label issues refits the SVM on fewer images; the test set stays the same
    run_script("4_trainSVM.py", tmp_path, *FAST, "svm_boExcludeSuspects=True")
    meta = json.loads((proc / "svm.json").read_text())
    assert meta["excluded_suspects"] >= 1 and meta["num_train_images"] == 90 - meta["excluded_suspects"]
    out = run_script("5_evaluate.py", tmp_path, *FAST, "svm_boExcludeSuspects=True").stdout
    assert f"excluded suspects {meta['excluded_suspects']}" in out
    assert f"The SVM was fit without these {meta['excluded_suspects']}" in (proc / "report.html").read_text()

    # turned off, it leaves no stale suspects.csv or map behind
    out = run_script("4_trainSVM.py", tmp_path, *FAST, "svm_boFindSuspects=False").stdout
    assert not (proc / "suspects.csv").exists() and not (proc / "feature_map.png").exists()


@pytest.mark.slow
def test_too_small_a_class_skips_the_suspects_with_a_message_and_the_svm_still_trains(tmp_path):
    make_dataset(tmp_path / "images" / "toy", {"horizontal": 4, "vertical": 12})
    for script in ("1_prepareData.py", "2_refineDNN.py", "3_runDNN.py"):
        run_script(script, tmp_path, *FAST)
    out = run_script("4_trainSVM.py", tmp_path, *FAST).stdout
    assert "label suspects skipped: class 'horizontal' has 3 training image(s), fewer than the 5" in out, out
    assert (tmp_path / "proc" / "toy" / "svm.json").is_file() and not (tmp_path / "proc" / "toy" / "suspects.csv").exists()
    run_script("5_evaluate.py", tmp_path, *FAST)
    page = (tmp_path / "proc" / "toy" / "report.html").read_text()
    assert "Label suspects: not searched: class &#x27;horizontal&#x27; has 3 training image(s)" in page
