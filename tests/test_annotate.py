"""Relabelling and excluding images: the file moves, the split follows, the log records, undo reverses."""

import numpy as np
import pytest

from libraries import annotate, results
from libraries.artifacts import load_json, save_json, save_npz
from libraries.dataset import find_classes, make_split

from conftest import make_dataset


@pytest.fixture
def dataset(tmp_path):
    images = make_dataset(tmp_path / "images", {"cat": 4, "dog": 4}, size=32)
    classes, _ = find_classes(images)
    split, _ = make_split(classes, images, 0.75, seed=0)
    save_json(tmp_path / "split.json", split)
    return images, tmp_path / "split.json", tmp_path / "log.jsonl"


def test_relabel_moves_file_updates_split_and_logs(dataset):
    images, split_path, log = dataset
    rel = load_json(split_path)["train"][0][0]
    assert rel.startswith("cat/")
    new = annotate.relabel(images, split_path, log, rel, "dog")
    assert new == "dog/" + rel.split("/")[1]
    assert not (images / rel).exists() and (images / new).is_file()
    split = load_json(split_path)
    assert [new, 1] in split["train"] and rel not in {p for p, _ in split["train"] + split["test"]}
    entry = annotate.read_log(log)[-1]
    assert entry["action"] == "relabel" and entry["path"] == rel and entry["new_path"] == new
    assert entry["old_label"] == "cat" and entry["new_label"] == "dog" and "time" in entry


def test_relabel_never_overwrites(dataset):
    images, split_path, log = dataset
    rel = load_json(split_path)["train"][0][0]
    clash = images / "dog" / rel.split("/")[1]
    clash.write_bytes(b"someone else's file")
    new = annotate.relabel(images, split_path, log, rel, "dog")
    assert new != clash.relative_to(images).as_posix() and new.endswith("_1.jpg")
    assert clash.read_bytes() == b"someone else's file"


def test_exclude_and_undo(dataset):
    images, split_path, log = dataset
    before = load_json(split_path)
    rel = before["test"][0][0]
    moved = annotate.exclude(images, split_path, log, rel)
    assert moved.startswith(".excluded/") and (images / moved).is_file()
    assert rel not in {p for p, _ in load_json(split_path)["test"]}
    assert find_classes(images)[0].keys() == {"cat", "dog"}  # the hidden folder is not a class
    entry = annotate.undo_last(images, split_path, log)
    assert entry["action"] == "exclude"
    assert (images / rel).is_file() and [rel, before["test"][0][1]] in load_json(split_path)["test"]
    assert [e["action"] for e in annotate.read_log(log)] == ["exclude", "undo"]
    assert annotate.undo_last(images, split_path, log) is None  # nothing left to undo


def test_undo_relabel_restores_label(dataset):
    images, split_path, log = dataset
    original = load_json(split_path)
    rel = original["train"][1][0]
    annotate.relabel(images, split_path, log, rel, "dog")
    annotate.undo_last(images, split_path, log)
    assert sorted(map(tuple, load_json(split_path)["train"])) == sorted(map(tuple, original["train"]))


def test_bad_changes_are_refused(dataset):
    images, split_path, log = dataset
    rel = load_json(split_path)["train"][0][0]
    with pytest.raises(annotate.AnnotationError, match="'bird' is not a class"):
        annotate.relabel(images, split_path, log, rel, "bird")
    with pytest.raises(annotate.AnnotationError, match="not in the split"):
        annotate.exclude(images, split_path, log, "cat/nope.jpg")
    assert annotate.read_log(log) == []


def test_results_filter_and_order(tmp_path):
    probabilities = np.array([[0.9, 0.1], [0.2, 0.8], [0.55, 0.45], [0.05, 0.95]], np.float32)
    save_npz(tmp_path / "s.npz", paths=np.array(["a", "b", "c", "d"]), labels=np.array([0, 0, 1, 1]),
             probabilities=probabilities, raw_scores=np.log(probabilities))
    rows = results.load(tmp_path / "s.npz", ["x", "y"])
    assert [r["correct"] for r in rows] == [True, False, False, True]
    assert rows[1]["confidence"] == pytest.approx(0.8) and rows[0]["probabilities"] == pytest.approx({"x": 0.9, "y": 0.1})
    wrong = results.select(rows, only_wrong=True, worst_first=True)
    assert [r["path"] for r in wrong] == ["b", "c"]  # b is the more confident mistake
    ordered = results.select(rows, worst_first=True)
    assert [r["path"] for r in ordered] == ["b", "c", "a", "d"]  # then the least confident correct ones
