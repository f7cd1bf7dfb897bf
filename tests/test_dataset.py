import json
import random

import numpy as np
import pytest

from libraries import dataset
from libraries.dataset import DatasetError, check_dataset_name, find_classes, make_split, split_class

from conftest import make_dataset, pattern_image


def test_find_classes_ignores_empty_class_with_a_warning(tmp_path):
    make_dataset(tmp_path, {"a": 3, "b": 2})
    (tmp_path / "empty").mkdir()
    (tmp_path / ".hidden").mkdir()
    classes, warnings = find_classes(tmp_path)
    assert sorted(classes) == ["a", "b"]
    assert any("empty" in w and "is empty and is ignored" in w for w in warnings)


def test_one_class_stops_with_one_sentence(tmp_path):
    make_dataset(tmp_path, {"only": 4})
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match=r"Only one class \('only'\) found .* at least two class folders"):
        find_classes(tmp_path)


def test_no_images_and_missing_folder(tmp_path):
    (tmp_path / "a").mkdir()
    with pytest.raises(DatasetError, match="No images found"):
        find_classes(tmp_path)
    with pytest.raises(DatasetError, match="does not exist: set DATA_DIR"):
        find_classes(tmp_path / "missing")


def test_split_is_seeded_per_class_and_disjoint(tmp_path):
    make_dataset(tmp_path, {"a": 20, "b": 8})
    classes, _ = find_classes(tmp_path)
    split1, _ = make_split(classes, tmp_path, 0.75, seed=3)
    split2, _ = make_split(classes, tmp_path, 0.75, seed=3)
    split3, _ = make_split(classes, tmp_path, 0.75, seed=4)
    assert split1 == split2 and split1 != split3
    n_test = np.bincount([i for _, i in split1["test"]])
    assert list(n_test) == [5, 2]
    assert not {p for p, _ in split1["train"]} & {p for p, _ in split1["test"]}
    assert len(split1["train"]) + len(split1["test"]) == 28


def test_single_image_class_trains_and_warns(tmp_path):
    make_dataset(tmp_path, {"a": 6, "b": 1})
    classes, _ = find_classes(tmp_path)
    split, warnings = make_split(classes, tmp_path, 0.75, seed=0)
    assert [p for p, i in split["train"] if i == 1] == ["b/b_000.jpg"]
    assert any("'b' has 1 image(s) and none in the test set" in w for w in warnings)


def test_subdir_split_keeps_folders_together(tmp_path):
    for label, k in (("a", 0), ("b", 1)):
        for session in range(4):
            folder = tmp_path / label / f"session{session}"
            folder.mkdir(parents=True)
            for i in range(3):
                pattern_image("vertical" if k else "horizontal", 100 * session + i, 16).save(folder / f"{i}.png")
    classes, _ = find_classes(tmp_path)
    split, _ = make_split(classes, tmp_path, 0.75, seed=0, split_by="subdir")
    train_dirs = {p.rsplit("/", 1)[0] for p, _ in split["train"]}
    test_dirs = {p.rsplit("/", 1)[0] for p, _ in split["test"]}
    assert not train_dirs & test_dirs
    assert len(test_dirs) == 2  # one session of each class


def test_dedicated_test_list_overrides(tmp_path):
    make_dataset(tmp_path, {"a": 4, "b": 4})
    tsv = tmp_path / "dedicatedTestImages.tsv"
    tsv.write_text("a/a_001.jpg\nb\tb_002.jpg\nb/missing.jpg\n../../etc/passwd\n")
    chosen, warnings = dataset.read_dedicated_test(tsv, tmp_path)
    assert len(chosen) == 2 and len(warnings) == 2
    classes, _ = find_classes(tmp_path)
    split, _ = make_split(classes, tmp_path, 0.75, seed=0, dedicated_test=chosen)
    assert sorted(p for p, _ in split["test"]) == ["a/a_001.jpg", "b/b_002.jpg"]
    assert split["splitBy"] == "dedicated"


def test_check_images_reports_bad_files_and_keeps_good(tmp_path):
    make_dataset(tmp_path, {"a": 3})
    (tmp_path / "a" / "zero.jpg").write_bytes(b"")
    (tmp_path / "a" / "text.jpg").write_text("hello")
    good, bad = dataset.check_images(sorted((tmp_path / "a").iterdir()), progress=False)
    assert len(good) == 3
    assert {p.name: r for p, r in bad} == {"zero.jpg": "empty file (0 bytes)",
                                           "text.jpg": "not an image that Pillow can read (unknown format or not an image at all)"}


def test_split_class_never_empties_training(tmp_path):
    files = [tmp_path / "c" / f"{i}.jpg" for i in range(2)]
    for seed in range(20):
        train, test = split_class(files, tmp_path / "c", 0.1, seed)
        assert len(train) == 1 and len(test) == 1
        train, test = split_class(files, tmp_path / "c", 0.99, seed)
        assert len(train) == 1 and len(test) == 1


def test_count_table():
    table = dataset.count_table({"labels": ["x", "y"], "train": [["x/1", 0], ["y/1", 1], ["y/2", 1]], "test": [["x/2", 0]]})
    assert "x" in table and table.splitlines()[-1].split() == ["total", "3", "1"]


# --- a split that stays put as images are added or removed ---------------------------------------------------------

def _as_saved(split):
    """The split as script 1 reads it back from split.json."""
    return json.loads(json.dumps(split))


def _sides(split):
    return {p: "train" for p, _ in split["train"]} | {p: "test" for p, _ in split["test"]}


def _add_images(folder, n, prefix="new"):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        pattern_image("checker", 5000 + i, 16).save(folder / f"{prefix}_{i:03d}.png")


def test_extending_a_split_of_the_same_images_changes_nothing(tmp_path):
    make_dataset(tmp_path, {"a": 20, "b": 8})
    classes, _ = find_classes(tmp_path)
    first, warnings = make_split(classes, tmp_path, 0.75, seed=3)
    again, warnings = make_split(classes, tmp_path, 0.75, seed=3, previous=_as_saved(first))
    assert warnings == []
    assert {k: v for k, v in again.items() if k != "changes"} == {k: v for k, v in first.items() if k != "changes"}
    assert first["changes"] == {"kept": 0, "moved": 0, "added_train": 21, "added_test": 7, "removed": 0}
    assert again["changes"] == {"kept": 28, "moved": 0, "added_train": 0, "added_test": 0, "removed": 0}


def test_adding_images_keeps_old_sides_and_splits_the_new_ones_in_ratio(tmp_path):
    make_dataset(tmp_path, {"a": 20, "b": 8})
    classes, _ = find_classes(tmp_path)
    old, _ = make_split(classes, tmp_path, 0.75, seed=0)
    _add_images(tmp_path / "a", 12)
    classes, _ = find_classes(tmp_path)
    new, warnings = make_split(classes, tmp_path, 0.75, seed=0, previous=_as_saved(old))
    assert warnings == []
    old_sides, new_sides = _sides(old), _sides(new)
    assert {p: new_sides[p] for p in old_sides} == old_sides  # no old image moved, either way
    added = {p: s for p, s in new_sides.items() if p not in old_sides}
    assert len(added) == 12 and all(p.startswith("a/new_") for p in added)
    # class a now has 32 images, so round(32 * 0.25) = 8 test images: the 5 it had and 3 of the 12 new ones
    assert sorted(added.values()).count("test") == 3
    assert np.bincount([i for _, i in new["test"]]).tolist() == [8, 2]
    assert new["changes"] == {"kept": 28, "moved": 0, "added_train": 9, "added_test": 3, "removed": 0}
    assert "28 image(s) kept their side, 0 changed sides, 9 new went to training and 3 to test" in dataset.changes_summary(new)


def test_removing_images_moves_no_other(tmp_path):
    make_dataset(tmp_path, {"a": 20, "b": 8})
    classes, _ = find_classes(tmp_path)
    old, _ = make_split(classes, tmp_path, 0.75, seed=0)
    gone = [p for p, i in old["test"] if i == 0][:3] + [p for p, i in old["train"] if i == 0][:3]
    for rel in gone:
        (tmp_path / rel).unlink()
    classes, _ = find_classes(tmp_path)
    new, warnings = make_split(classes, tmp_path, 0.75, seed=0, previous=_as_saved(old))
    assert warnings == []
    expected = {p: s for p, s in _sides(old).items() if p not in gone}
    assert _sides(new) == expected
    assert new["changes"] == {"kept": 22, "moved": 0, "added_train": 0, "added_test": 0, "removed": 6}


@pytest.mark.parametrize("change, message", [
    ({"ratio_train": 0.5}, "ratioTrainTest changed from 0.75 to 0.5: a new split was made"),
    ({"seed": 1}, "randomSeed changed from 0 to 1: a new split was made"),
    ({"split_by": "subdir"}, "imagesSplitBy changed from 'filename' to 'subdir': a new split was made"),
])
def test_changed_parameters_make_a_fresh_split_and_say_why(tmp_path, change, message):
    make_dataset(tmp_path, {"a": 20, "b": 8})
    classes, _ = find_classes(tmp_path)
    old, _ = make_split(classes, tmp_path, 0.75, seed=0)
    args = {"ratio_train": 0.75, "seed": 0, "split_by": "filename", **change}
    new, warnings = make_split(classes, tmp_path, previous=_as_saved(old), **args)
    fresh, _ = make_split(classes, tmp_path, **args)
    assert warnings == [message]
    assert new["train"] == fresh["train"] and new["test"] == fresh["test"]
    assert new["changes"]["kept"] + new["changes"]["moved"] == 28 and new["changes"]["removed"] == 0
    if "ratio_train" in change:
        assert len(new["test"]) == 14 and new["changes"]["moved"] >= 7


def test_a_previous_dedicated_split_is_not_extended(tmp_path):
    make_dataset(tmp_path, {"a": 8, "b": 8})
    classes, _ = find_classes(tmp_path)
    chosen = {(tmp_path / "a" / "a_000.jpg").resolve(), (tmp_path / "b" / "b_000.jpg").resolve()}
    old, _ = make_split(classes, tmp_path, 0.75, seed=0, dedicated_test=chosen)
    new, warnings = make_split(classes, tmp_path, 0.75, seed=0, previous=_as_saved(old))
    assert warnings == ["the previous split took its test set from dedicatedTestImages.tsv, which is gone: a new split was made"]
    assert new == {**make_split(classes, tmp_path, 0.75, seed=0)[0], "changes": new["changes"]}
    # and a dedicated list overrides a previous split without a word
    again, warnings = make_split(classes, tmp_path, 0.75, seed=0, dedicated_test=chosen, previous=_as_saved(new))
    assert warnings == [] and sorted(p for p, _ in again["test"]) == ["a/a_000.jpg", "b/b_000.jpg"]


def test_relabelled_image_is_a_new_path(tmp_path):
    make_dataset(tmp_path, {"a": 8, "b": 8})
    classes, _ = find_classes(tmp_path)
    old, _ = make_split(classes, tmp_path, 0.75, seed=0)
    moved_from = next(p for p, i in old["train"] if i == 0)
    (tmp_path / moved_from).rename(tmp_path / "b" / "from_a.jpg")
    classes, _ = find_classes(tmp_path)
    new, _ = make_split(classes, tmp_path, 0.75, seed=0, previous=_as_saved(old))
    sides = _sides(new)
    assert moved_from not in sides and "b/from_a.jpg" in sides
    assert all(sides[p] == s for p, s in _sides(old).items() if p != moved_from)
    assert new["changes"]["removed"] == 1 and new["changes"]["added_train"] + new["changes"]["added_test"] == 1


def test_a_class_left_with_only_test_images_gets_one_back_for_training(tmp_path):
    make_dataset(tmp_path, {"a": 8, "b": 2})
    classes, _ = find_classes(tmp_path)
    old, _ = make_split(classes, tmp_path, 0.75, seed=0)
    b_train = [p for p, i in old["train"] if i == 1]
    b_test = [p for p, i in old["test"] if i == 1]
    assert len(b_train) == 1 and len(b_test) == 1
    (tmp_path / b_train[0]).unlink()
    classes, _ = find_classes(tmp_path)
    new, warnings = make_split(classes, tmp_path, 0.75, seed=0, previous=_as_saved(old))
    assert [p for p, i in new["train"] if i == 1] == b_test
    assert "class 'b': 1 image(s) changed sides so that it keeps both a training and a test image" in warnings
    assert new["changes"]["moved"] == 1


def _make_sessions(root, label, sessions, per_session, seed_offset=0):
    for session in sessions:
        folder = root / label / f"session{session}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_session):
            pattern_image("horizontal", seed_offset + 100 * session + i, 16).save(folder / f"{i}.png")


def test_subdir_extension_keeps_sessions_together(tmp_path):
    for label in ("a", "b"):
        _make_sessions(tmp_path, label, range(4), 3)
    classes, _ = find_classes(tmp_path)
    old, _ = make_split(classes, tmp_path, 0.75, seed=0, split_by="subdir")
    # one more image in every old session of a, and two new sessions of three
    for session in range(4):
        pattern_image("checker", 900 + session, 16).save(tmp_path / "a" / f"session{session}" / "late.png")
    _make_sessions(tmp_path, "a", (4, 5), 3, seed_offset=50)
    classes, _ = find_classes(tmp_path)
    new, warnings = make_split(classes, tmp_path, 0.75, seed=0, split_by="subdir", previous=_as_saved(old))
    assert warnings == []

    def session_sides(split):
        sides = {}
        for side in ("train", "test"):
            for p, _ in split[side]:
                sides.setdefault(p.rsplit("/", 1)[0], set()).add(side)
        assert all(len(s) == 1 for s in sides.values()), "a session is on both sides"
        return {folder: s.pop() for folder, s in sides.items()}

    before, after = session_sides(old), session_sides(new)
    assert {folder: after[folder] for folder in before} == before
    # class a: 16 + 6 = 22 images, round(5.5) = 6 test images; it had one test session (now 4 images), so exactly
    # one of the two new sessions goes to test
    assert sorted(after[f"a/session{s}"] for s in (4, 5)) == ["test", "train"]
    # added: a late image in each of 3 training sessions and 1 test session, and the two new sessions
    assert new["changes"] == {"kept": 24, "moved": 0, "added_train": 3 + 3, "added_test": 1 + 3, "removed": 0}


def test_first_split_ignores_listing_order_and_other_classes(tmp_path):
    make_dataset(tmp_path, {"a": 20, "b": 8, "c": 5})
    classes, _ = find_classes(tmp_path)
    split, _ = make_split(classes, tmp_path, 0.75, seed=7)
    shuffled = {label: random.Random(1).sample(files, len(files)) for label, files in reversed(classes.items())}
    assert make_split(shuffled, tmp_path, 0.75, seed=7)[0] == split
    without_c, _ = make_split({k: v for k, v in classes.items() if k != "c"}, tmp_path, 0.75, seed=7)
    assert {p: s for p, s in _sides(split).items() if not p.startswith("c/")} == _sides(without_c)
    assert make_split(classes, tmp_path, 0.75, seed=8)[0]["test"] != split["test"]


# --- datasets that are not one folder per class, and dataset names that are paths ----------------------------------

def test_a_dataset_already_split_into_train_val_test_is_explained(tmp_path):
    for part in ("Train", "val"):
        make_dataset(tmp_path / part, {"cat": 2, "dog": 2})
    with pytest.raises(DatasetError) as info:
        find_classes(tmp_path)
    message = str(info.value)
    assert str(tmp_path) in message and "Train, val" in message
    assert "looks like a dataset already split into train/val/test folders that each hold class folders" in message
    assert "one folder per class directly under" in message and "merge" in message
    assert "dedicatedTestImages.tsv" in message and "<class>/<file>" in message


def test_one_class_named_test_is_still_a_class(tmp_path):
    make_dataset(tmp_path, {"test": 2, "other": 2})
    classes, _ = find_classes(tmp_path)
    assert sorted(classes) == ["other", "test"]


@pytest.mark.parametrize("name", ["/abs/dir", "../images/x", "a/b", "..", ".", "", ".hidden", "a\\b", "a\0b"])
def test_a_dataset_name_must_be_a_plain_folder_name(name):
    with pytest.raises(DatasetError, match=r"is not a plain folder name: use the name of the folder under "
                                           r"DATA_DIR/images/ \(e\.g\. 'solar'\), not a path"):
        check_dataset_name(name)


def test_a_plain_dataset_name_passes():
    assert check_dataset_name("solar_cells-2") == "solar_cells-2"


def test_classes_split_inside_into_train_and_test_folders_are_explained(tmp_path):
    for label in ("cat", "dog"):
        make_dataset(tmp_path / label, {"train": 3, "test": 2})
    with pytest.raises(DatasetError, match=r"cat holds folders named test, train: it looks like each class is already "
                                           r"split.*dedicatedTestImages.tsv"):
        find_classes(tmp_path)
    make_dataset(tmp_path / "bird", {"session1": 2})  # ordinary sub-folders are fine
    for label in ("cat", "dog"):
        for sub in ("train", "test"):
            for f in (tmp_path / label / sub).iterdir():
                f.rename(tmp_path / label / f"{sub}_{f.name}")
            (tmp_path / label / sub).rmdir()
    classes, _ = find_classes(tmp_path)
    assert sorted(classes) == ["bird", "cat", "dog"]
