import numpy as np
import pytest

from libraries import dataset
from libraries.dataset import DatasetError, find_classes, make_split, split_class

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
    rng = np.random.default_rng(0)
    files = [tmp_path / "c" / f"{i}.jpg" for i in range(2)]
    train, test = split_class(files, tmp_path / "c", 0.1, rng)
    assert len(train) == 1 and len(test) == 1


def test_count_table():
    table = dataset.count_table({"labels": ["x", "y"], "train": [["x/1", 0], ["y/1", 1], ["y/2", 1]], "test": [["x/2", 0]]})
    assert "x" in table and table.splitlines()[-1].split() == ["total", "3", "1"]
