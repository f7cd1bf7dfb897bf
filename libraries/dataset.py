"""A dataset on disk (``images/<dataset>/<class>/...``): finding its classes and images, checking that they
decode, and splitting them into training and test sets per class."""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .artifacts import text_digest
from .errors import DatasetError
from .images import ImageError, is_ignored, list_files, read_image
from .layout import DEDICATED_TEST

__all__ = ["DatasetError", "check_dataset_name", "find_classes", "check_images", "split_class", "read_dedicated_test",
           "make_split", "count_table", "changes_summary"]

# Folder names that mean "this dataset is already split", not a class.
SPLIT_FOLDER_NAMES = {"train", "training", "val", "valid", "validation", "test", "testing"}


def check_dataset_name(name: str) -> str:
    """Return ``name`` if it is a plain folder name (the folder under ``DATA_DIR/images/``); raise ``DatasetError``
    for a path, an empty or hidden name, ``.`` or ``..``."""
    if not isinstance(name, str):
        raise DatasetError(f"datasetName must be a folder name under DATA_DIR/images/ (e.g. 'solar'), got {name!r}")
    if (name in ("", ".", "..") or "/" in name or "\\" in name or "\0" in name or os.path.isabs(name)
            or name.startswith(".")):
        raise DatasetError(f"datasetName {name!r} is not a plain folder name: use the name of the folder under "
                           f"DATA_DIR/images/ (e.g. 'solar'), not a path")
    return name


def find_classes(images_dir: Path) -> tuple[dict[str, list[Path]], list[str]]:
    """Map each class folder to its files (hidden and system files ignored).

    Returns the classes that have files, and one warning per empty class folder. Raises ``DatasetError`` when the
    folder is missing, holds fewer than two non-empty classes, or looks already split into train/val/test folders.
    """
    images_dir = Path(images_dir)
    if not images_dir.is_dir():
        raise DatasetError(
            f"The image folder {images_dir} does not exist: set DATA_DIR and datasetName, run scripts/0_downloadData.py, "
            f"or copy one sub-folder of images per class there."
        )
    folders = sorted(p for p in images_dir.iterdir() if p.is_dir() and not is_ignored(p))
    split_folders = [p.name for p in folders if p.name.lower() in SPLIT_FOLDER_NAMES]
    if len(split_folders) >= 2:
        example = "/<class>/, ".join(split_folders) + "/<class>/"
        raise DatasetError(
            f"{images_dir} holds folders named {', '.join(split_folders)}, so it looks like a dataset already split into "
            f"train/val/test folders that each hold class folders, but this tool needs one folder per class directly "
            f"under {images_dir}: merge {example} into <class>/, and to keep the given test split list the test "
            f"images in {images_dir / DEDICATED_TEST}, one <class>/<file> per line."
        )
    for folder in folders:
        inner = sorted(p.name for p in folder.iterdir() if p.is_dir() and p.name.lower() in SPLIT_FOLDER_NAMES)
        if len(inner) >= 2:
            raise DatasetError(
                f"{folder} holds folders named {', '.join(inner)}: it looks like each class is already split into "
                f"train/val/test folders, which this tool would take as ordinary sub-folders and mix up. Move the images "
                f"up into {folder}/ (one folder per class, nothing else), and to keep the given test split list the "
                f"test images in {images_dir / DEDICATED_TEST}, one <class>/<file> per line."
            )
    classes, warnings = {}, []
    for folder in folders:
        files = list_files(folder)
        if files:
            classes[folder.name] = files
        else:
            warnings.append(f"class folder {folder} is empty and is ignored")
    loose = [p.name for p in images_dir.iterdir() if p.is_file() and not is_ignored(p) and p.name != DEDICATED_TEST]
    if loose:
        warnings.append(f"{len(loose)} file(s) directly in {images_dir} belong to no class and are ignored, e.g. {loose[0]}")
    if not classes:
        raise DatasetError(f"No images found in {images_dir}: it needs one sub-folder of images per class.")
    if len(classes) < 2:
        only = next(iter(classes))
        raise DatasetError(
            f"Only one class ({only!r}) found in {images_dir}: a classifier needs at least two class folders with images."
        )
    return classes, warnings


def check_images(paths: list[Path], workers: int | None = None, progress: bool = True) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Decode every file; return the good ones and (path, reason) for each that cannot be used."""
    workers = workers or min(8, os.cpu_count() or 1)

    def check(path):
        try:
            read_image(path, min_size=64)
            return None
        except ImageError as err:
            return err.reason

    good, bad = [], []
    with ThreadPoolExecutor(workers) as pool:
        reasons = pool.map(check, paths)
        for path, reason in tqdm(zip(paths, reasons), total=len(paths), desc="checking images", unit="img", disable=not progress):
            (bad.append((path, reason)) if reason else good.append(path))
    return good, bad


def _group_key(path: Path, class_dir: Path, split_by: str) -> str:
    rel = path.relative_to(class_dir)
    if split_by == "subdir" and len(rel.parts) > 1:
        return rel.parts[0]
    return rel.as_posix()


def _group_rank(seed: int, label: str, key: str) -> str:
    # A hash, not a shared rng: a group's place depends only on itself, so adding images or classes, or listing the
    # files in another order, never reshuffles the others.
    return text_digest([seed, label, key])


def split_class(files: list[Path], class_dir: Path, ratio_train: float, seed: int, split_by: str = "filename", *,
                previous_sides: dict[Path, str] | None = None,
                together: list[list[Path]] = ()) -> tuple[list[Path], list[Path]]:
    """Split one class's files into (train, test), keeping each group (a file, or a sub-folder with
    ``split_by='subdir'``, merged with any of the ``together`` lists, e.g. near-duplicates, it shares a file with)
    on one side.

    A group that ``previous_sides`` (path -> ``"train"`` or ``"test"``) already places keeps its side; the other groups
    are taken in the order of a seeded hash of their class and name, and go to test until the class's test set reaches
    ``round(len(files) * (1 - ratio_train))`` images. A class of two or more groups gets at least one of each side,
    and the last new group trains when no kept group does; a kept group changes side only when that is the only way
    to give its class both a training and a test image.
    """
    label = Path(class_dir).name
    key_of = {path: _group_key(path, class_dir, split_by) for path in files}
    root = {key: key for key in key_of.values()}

    def find(key):
        while root[key] != key:
            key = root[key]
        return key

    for members in together:
        keys = sorted({find(key_of[p]) for p in members if p in key_of})
        for key in keys[1:]:
            root[key] = keys[0]
    groups: dict[str, list[Path]] = {}
    for path in sorted(files):
        groups.setdefault(find(key_of[path]), []).append(path)
    order = sorted(groups, key=lambda key: _group_rank(seed, label, key))
    previous_sides = previous_sides or {}
    side: dict[str, str] = {}
    for key in order:
        known = [previous_sides[p] for p in groups[key] if p in previous_sides]
        if known:
            side[key] = "test" if known.count("test") > known.count("train") else "train"
    new = [key for key in order if key not in side]

    n_test_target = round(len(files) * (1.0 - ratio_train))
    if len(groups) >= 2:
        n_test_target = max(n_test_target, 1)
    n_test = sum(len(groups[key]) for key in side if side[key] == "test")
    keeps_training = "train" in side.values()
    for i, key in enumerate(new):
        last_trains = not keeps_training and i == len(new) - 1  # so no class is left without training images
        side[key] = "test" if n_test < n_test_target and not last_trains else "train"
        n_test += len(groups[key]) if side[key] == "test" else 0
    if groups and "train" not in side.values():
        side[[key for key in order if side[key] == "test"][-1]] = "train"
    if len(groups) >= 2 and "test" not in side.values():
        side[order[0]] = "test"

    train = [p for key in order if side[key] == "train" for p in groups[key]]
    test = [p for key in order if side[key] == "test" for p in groups[key]]
    return sorted(train), sorted(test)


def read_dedicated_test(tsv: Path, images_dir: Path) -> tuple[set[Path], list[str]]:
    """Read ``dedicatedTestImages.tsv``: one image per line, as ``<class>/<file>`` or ``<class><TAB><file>``."""
    chosen, warnings = set(), []
    for number, line in enumerate(Path(tsv).read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        rel = Path(*line.split("\t")) if "\t" in line else Path(line)
        path = (images_dir / rel).resolve()
        if images_dir.resolve() not in path.parents:
            warnings.append(f"{tsv}:{number}: {line!r} lies outside {images_dir} and is ignored")
        elif not path.is_file():
            warnings.append(f"{tsv}:{number}: {line!r} does not exist and is ignored")
        else:
            chosen.add(path)
    return chosen, warnings


def _why_new_split(previous: dict, ratio_train: float, seed: int, split_by: str) -> str | None:
    """Why ``previous`` cannot be extended with these parameters (a warning), or None if it can."""
    if previous.get("splitBy") == "dedicated":
        return "the previous split took its test set from dedicatedTestImages.tsv, which is gone: a new split was made"
    for name, key, now in (("randomSeed", "seed", seed), ("ratioTrainTest", "ratioTrainTest", ratio_train),
                           ("imagesSplitBy", "splitBy", split_by)):
        if key not in previous:
            return f"the previous split does not record its {name}: a new split was made"
        if previous[key] != now:
            return f"{name} changed from {previous[key]!r} to {now!r}: a new split was made"
    return None


def make_split(classes: dict[str, list[Path]], images_dir: Path, ratio_train: float, seed: int,
               split_by: str = "filename", dedicated_test: set[Path] | None = None, *,
               previous: dict | None = None, together: list[list[Path]] = ()) -> tuple[dict, list[str]]:
    """The train/test split as a JSON-able dict (paths relative to ``images_dir``), and warnings.

    With ``previous`` (an earlier split, as loaded from split.json) made with the same ``seed``, ``ratio_train`` and
    ``split_by``, every image or group it placed keeps its side and only new ones are assigned, so that each class's
    test set approaches its share again; made with other parameters, a fresh split is made and a warning says why.
    A first split and an extension take the same path, so extending a split of the same images changes nothing.
    With ``dedicated_test``, exactly those images form the test set and all others the training set.
    Each list in ``together`` (near-duplicates, say) ends on one side: within a class by ``split_class``, and a list
    that spans classes on the side of its first member. A ``dedicated_test`` is kept as it is.

    ``split["changes"]`` counts, against ``previous``, the images ``kept`` on their side, ``moved`` to the other side,
    ``added_train`` and ``added_test`` (not in ``previous``), and ``removed`` (in ``previous`` but gone).
    """
    images_dir = Path(images_dir)
    labels = sorted(classes)
    warnings = []
    before = {}
    if previous is not None:
        before = {images_dir / p: s for s in ("train", "test") for p, _ in previous.get(s, [])}
    extend = previous is not None and dedicated_test is None
    if extend:
        why = _why_new_split(previous, ratio_train, seed, split_by)
        if why:
            warnings.append(why)
            extend = False
    sides: dict[Path, str] = {}
    for label in labels:
        files = classes[label]
        if dedicated_test is not None:
            sides.update({p: "test" if p.resolve() in dedicated_test else "train" for p in files})
        else:
            tr, te = split_class(files, images_dir / label, ratio_train, seed, split_by,
                                 previous_sides=before if extend else None, together=together)
            sides.update({p: "train" for p in tr} | {p: "test" for p in te})
    if dedicated_test is None:
        for members in together:
            members = sorted(p for p in members if p in sides)
            if len({sides[p] for p in members}) > 1:
                sides.update({p: sides[members[0]] for p in members})
    train, test = [], []
    changes = {"kept": 0, "moved": 0, "added_train": 0, "added_test": 0, "removed": 0}
    for label_id, label in enumerate(labels):
        files = sorted(classes[label])
        tr = [p for p in files if sides[p] == "train"]
        te = [p for p in files if sides[p] == "test"]
        moved = 0
        for side, paths in (("train", tr), ("test", te)):
            for p in paths:
                if p not in before:
                    changes[f"added_{side}"] += 1
                elif before[p] == side:
                    changes["kept"] += 1
                else:
                    changes["moved"] += 1
                    moved += 1
        if extend and moved:
            warnings.append(f"class {label!r}: {moved} image(s) changed sides so that it keeps both a training and a test image")
        if not te:
            warnings.append(f"class {label!r} has {len(files)} image(s) and none in the test set: its test accuracy is undefined")
        if not tr:
            raise DatasetError(f"class {label!r} has no training image: add images to {images_dir / label} or take some out of the test list")
        train += [[p.relative_to(images_dir).as_posix(), label_id] for p in tr]
        test += [[p.relative_to(images_dir).as_posix(), label_id] for p in te]
    changes["removed"] = len(before) - changes["kept"] - changes["moved"]
    overlap = {p for p, _ in train} & {p for p, _ in test}
    assert not overlap, f"train and test overlap: {sorted(overlap)[:5]}"
    split = {"labels": labels, "seed": seed, "ratioTrainTest": ratio_train,
             "splitBy": "dedicated" if dedicated_test is not None else split_by, "train": train, "test": test,
             "changes": changes}
    return split, warnings


def changes_summary(split: dict) -> str:
    """One line saying how ``make_split`` changed the previous split, e.g. for a script to print."""
    c = split["changes"]
    return (f"against the previous split.json: {c['kept']} image(s) kept their side, {c['moved']} changed sides, "
            f"{c['added_train']} new went to training and {c['added_test']} to test, {c['removed']} removed")


def validation_subset(rows: list, labels: list[str], fraction: float, seed: int) -> tuple[list, list]:
    """Split training rows ([relative path, label id] pairs) into (rows to train on, validation rows): about
    ``fraction`` of each class, at least one image of any class with two or more when ``fraction > 0``, never all.
    The choice is a seeded hash of each path, so it stays put as images are added."""
    by_class: dict[int, list] = {}
    for row in rows:
        by_class.setdefault(int(row[1]), []).append(row)
    val_paths = set()
    for label_id, members in by_class.items():
        n_val = round(len(members) * fraction)
        if fraction > 0 and len(members) >= 2:
            n_val = min(max(n_val, 1), len(members) - 1)
        ordered = sorted(members, key=lambda row: _group_rank(seed, f"validation:{labels[label_id]}", row[0]))
        val_paths.update(row[0] for row in ordered[:n_val])
    return [r for r in rows if r[0] not in val_paths], [r for r in rows if r[0] in val_paths]


def count_table(split: dict) -> str:
    """A per-class table of training and test image counts."""
    labels = split["labels"]
    n_train = np.bincount([i for _, i in split["train"]], minlength=len(labels))
    n_test = np.bincount([i for _, i in split["test"]], minlength=len(labels))
    width = max(8, *(len(l) for l in labels))
    lines = [f"{'class':<{width}}  {'train':>7}  {'test':>7}"]
    lines += [f"{l:<{width}}  {a:>7}  {b:>7}" for l, a, b in zip(labels, n_train, n_test)]
    lines.append(f"{'total':<{width}}  {n_train.sum():>7}  {n_test.sum():>7}")
    return "\n".join(lines)
