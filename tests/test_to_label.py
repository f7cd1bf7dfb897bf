"""What to label next: a real pipeline's bundle ranks images between two classes above clean ones."""
import numpy as np
import pytest
from PIL import Image

from libraries import annotate, predict

from conftest import make_dataset, pattern_image, run_script

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
    assert len(missing) == 1 and "nothing" in missing[0]


@pytest.mark.slow
def test_images_between_two_classes_rank_first(tmp_path):
    make_dataset(tmp_path / "images" / "toy", {"horizontal": 16, "vertical": 16})
    for script in ("1_prepareData.py", "2_refineDNN.py", "3_runDNN.py", "4_trainSVM.py", "5_evaluate.py"):
        run_script(script, tmp_path, *FAST)
    new = tmp_path / "unlabelled"
    (new / "sub").mkdir(parents=True)
    for i in range(6):
        pattern_image("horizontal", 5000 + i).save(new / f"clean_h{i}.jpg")
        pattern_image("vertical", 6000 + i).save(new / "sub" / f"clean_v{i}.jpg")
    for i in range(4):  # half one class, half the other
        h, v = (np.asarray(pattern_image(kind, 7000 + i), np.float32) for kind in ("horizontal", "vertical"))
        Image.fromarray(((h + v) / 2).astype(np.uint8)).save(new / f"between{i}.jpg")
    (new / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    out = run_script("toLabel.py", tmp_path, *FAST, extra=[str(new)]).stdout
    assert "unreadable: " in out and "broken.jpg" in out and "ranked 16 image(s)" in out
    rows = predict.read_csv(tmp_path / "proc" / "toy" / "to_label.csv")
    assert list(rows[0])[:7] == ["rank", "path", "margin", "entropy", "label", "probability", "error"]
    assert {"p_horizontal", "p_vertical"} <= set(rows[0])
    assert len(rows) == 17 and rows[-1]["path"].endswith("broken.jpg") and rows[-1]["error"]
    first = [r["path"].rsplit("/", 1)[-1] for r in rows[:4]]
    assert all(name.startswith("between") for name in first), [(r["path"], r["margin"]) for r in rows]
    margins = [float(r["margin"]) for r in rows[:16]]
    assert margins == sorted(margins)

    # a click in the labelling view moves the file into its class folder, logged; undo moves it back
    from libraries.widgets import LabelQueue

    proc = tmp_path / "proc" / "toy"
    queue = LabelQueue(proc / "to_label.csv", tmp_path / "images" / "toy", proc / "split.json", proc / "annotation_log.jsonl")
    assert queue.position.value == "page 1 of 2 (16 images to label)"
    card, buttons = queue.cards[0]
    source = new / first[0]
    buttons[[b.description for b in buttons].index("vertical")].click()
    entry = annotate.read_log(proc / "annotation_log.jsonl")[-1]
    assert entry["action"] == "label" and entry["new_path"] == f"vertical/{first[0]}" and not source.exists()
    assert (tmp_path / "images" / "toy" / "vertical" / first[0]).is_file()
    assert queue.position.value.endswith("(15 images to label)")
    queue.undo.click()
    assert source.is_file() and not (tmp_path / "images" / "toy" / "vertical" / first[0]).exists()
    assert queue.position.value.endswith("(16 images to label)")
