"""A dataset on disk (``images/<dataset>/<class>/...``): finding its classes and images, checking that they
decode, and splitting them into training and test sets per class."""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .errors import UserError
from .images import ImageError, is_ignored, list_files, read_image


class DatasetError(UserError):
    """A dataset that cannot be trained on; the message says what to fix."""


def find_classes(images_dir: Path) -> tuple[dict[str, list[Path]], list[str]]:
    """Map each class folder to its files (hidden and system files ignored).

    Returns the classes that have files, and one warning per empty class folder. Raises ``DatasetError`` when the
    folder is missing or holds fewer than two non-empty classes.
    """
    images_dir = Path(images_dir)
    if not images_dir.is_dir():
        raise DatasetError(
            f"The image folder {images_dir} does not exist: set DATA_DIR and datasetName, run scripts/0_downloadData.py, "
            f"or copy one sub-folder of images per class there."
        )
    classes, warnings = {}, []
    for folder in sorted(p for p in images_dir.iterdir() if p.is_dir() and not is_ignored(p)):
        files = list_files(folder)
        if files:
            classes[folder.name] = files
        else:
            warnings.append(f"class folder {folder} is empty and is ignored")
    loose = [p.name for p in images_dir.iterdir() if p.is_file() and not is_ignored(p) and p.name != "dedicatedTestImages.tsv"]
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
    return str(rel)


def split_class(files: list[Path], class_dir: Path, ratio_train: float, rng: np.random.Generator,
                split_by: str = "filename") -> tuple[list[Path], list[Path]]:
    """Split one class's files into (train, test), keeping each group (a file, or a sub-folder with
    ``split_by='subdir'``) on one side. A class of two or more groups gets at least one of each side."""
    groups: dict[str, list[Path]] = {}
    for path in sorted(files):
        groups.setdefault(_group_key(path, class_dir, split_by), []).append(path)
    keys = sorted(groups)
    rng.shuffle(keys)
    n_test_target = round(len(files) * (1.0 - ratio_train))
    if len(keys) >= 2:
        n_test_target = max(n_test_target, 1)
    test = []
    for key in keys[:-1]:  # the last group always trains, so no class is left without training images
        if len(test) >= n_test_target:
            break
        test.extend(groups[key])
    chosen = set(test)
    train = [p for p in files if p not in chosen]
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


def make_split(classes: dict[str, list[Path]], images_dir: Path, ratio_train: float, seed: int,
               split_by: str = "filename", dedicated_test: set[Path] | None = None) -> tuple[dict, list[str]]:
    """The train/test split as a JSON-able dict (paths relative to ``images_dir``), and warnings.

    With ``dedicated_test``, exactly those images form the test set and all others the training set.
    """
    images_dir = Path(images_dir)
    rng = np.random.default_rng(seed)
    labels = sorted(classes)
    train, test, warnings = [], [], []
    for label_id, label in enumerate(labels):
        files = classes[label]
        if dedicated_test is not None:
            tr = [p for p in files if p.resolve() not in dedicated_test]
            te = [p for p in files if p.resolve() in dedicated_test]
        else:
            tr, te = split_class(files, images_dir / label, ratio_train, rng, split_by)
        if not te:
            warnings.append(f"class {label!r} has {len(files)} image(s) and none in the test set: its test accuracy is undefined")
        if not tr:
            raise DatasetError(f"class {label!r} has no training image: add images to {images_dir / label} or take some out of the test list")
        train += [[p.relative_to(images_dir).as_posix(), label_id] for p in tr]
        test += [[p.relative_to(images_dir).as_posix(), label_id] for p in te]
    overlap = {p for p, _ in train} & {p for p, _ in test}
    assert not overlap, f"train and test overlap: {sorted(overlap)[:5]}"
    split = {"labels": labels, "seed": seed, "ratioTrainTest": ratio_train,
             "splitBy": "dedicated" if dedicated_test is not None else split_by, "train": train, "test": test}
    return split, warnings


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
