"""The demo dataset: ELPV solar cells (PyPI package ``elpv-dataset``, CC BY-NC-SA 4.0) in the folder layout.

2,624 electroluminescence images of solar cells, 300x300 greyscale, each with a defect probability and a cell
type. As in Deitsch et al. (Solar Energy, 2019), a cell is ``defective`` at probability >= 0.5, else
``functional``, and 25% of the cells, stratified by defect probability and cell type, form the test set; that
test set is written to ``dedicatedTestImages.tsv`` so that script 1 uses it.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from .artifacts import atomic_path
from .layout import DEDICATED_TEST

DEFECT_THRESHOLD = 0.5


def package_labels_file() -> Path:
    import elpv_dataset.utils

    return Path(elpv_dataset.utils.__file__).parent / "data" / "labels.csv"


def read_labels(labels_csv: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image paths relative to the csv, defect probabilities, cell types), read the way the package reads them."""
    data = np.genfromtxt(labels_csv, dtype=["|S19", "<f8", "|S4"], names=["path", "probability", "type"])
    return np.char.decode(data["path"]), data["probability"], np.char.decode(data["type"])


def test_selection(probabilities: np.ndarray, types: np.ndarray, test_fraction: float = 0.25, seed: int = 0) -> np.ndarray:
    """Boolean mask of the test cells: a seeded ``test_fraction`` of each (probability, type) stratum."""
    from sklearn.model_selection import train_test_split

    strata = np.array([f"{p:.3f}-{t}" for p, t in zip(probabilities, types)])
    index = np.arange(len(strata))
    _, test_index = train_test_split(index, test_size=test_fraction, stratify=strata, random_state=seed)
    mask = np.zeros(len(strata), bool)
    mask[test_index] = True
    return mask


def install(dest_dir: Path, seed: int = 0, labels_csv: Path | None = None) -> dict:
    """Copy the ELPV images into ``dest_dir/{functional,defective}/`` and write ``dedicatedTestImages.tsv``.

    Files already there are kept. Returns counts per class and of the test set.
    """
    dest_dir = Path(dest_dir)
    labels_csv = Path(labels_csv or package_labels_file())
    paths, probabilities, types = read_labels(labels_csv)
    test = test_selection(probabilities, types, seed=seed)
    counts = {"functional": 0, "defective": 0, "test": int(test.sum())}
    lines = []
    for rel, probability, is_test in zip(paths, probabilities, test):
        label = "defective" if probability >= DEFECT_THRESHOLD else "functional"
        target = dest_dir / label / Path(rel).name
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(target) as tmp:
                shutil.copyfile(labels_csv.parent / rel, tmp)
        counts[label] += 1
        if is_test:
            lines.append(f"{label}/{target.name}")
    with atomic_path(dest_dir / DEDICATED_TEST) as tmp:
        tmp.write_text("# the ELPV test cells: 25% stratified by defect probability and cell type\n" + "\n".join(lines) + "\n")
    return counts
