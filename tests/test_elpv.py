import numpy as np
from PIL import Image

from libraries import elpv


def fake_package(tmp_path, n=40):
    """A labels.csv and images laid out as the elpv-dataset package has them."""
    (tmp_path / "pkg" / "images").mkdir(parents=True)
    lines = []
    for i in range(n):
        probability = [0.0, 1 / 3, 2 / 3, 1.0][i % 4]
        kind = "mono" if i % 2 else "poly"
        name = f"images/cell{i + 1:04d}.png"
        Image.fromarray(np.full((30, 30), i, np.uint8)).save(tmp_path / "pkg" / name)
        lines.append(f"{name}  {probability:.16f}  {kind}")
    (tmp_path / "pkg" / "labels.csv").write_text("\n".join(lines) + "\n")
    return tmp_path / "pkg" / "labels.csv"


def test_install_lays_out_classes_and_test_list(tmp_path):
    csv = fake_package(tmp_path)
    counts = elpv.install(tmp_path / "out", seed=0, labels_csv=csv)
    assert counts == {"functional": 20, "defective": 20, "test": 10}  # p >= 0.5 is defective; 25% test
    assert len(list((tmp_path / "out" / "defective").iterdir())) == 20
    listed = [l for l in (tmp_path / "out" / "dedicatedTestImages.tsv").read_text().splitlines() if not l.startswith("#")]
    assert len(listed) == 10 and all((tmp_path / "out" / l).is_file() for l in listed)
    again = elpv.install(tmp_path / "out", seed=0, labels_csv=csv)
    assert again == counts
    assert [l for l in (tmp_path / "out" / "dedicatedTestImages.tsv").read_text().splitlines() if not l.startswith("#")] == listed


def test_real_package_split_is_stratified():
    paths, probabilities, types = elpv.read_labels(elpv.package_labels_file())
    assert len(paths) == 2624
    test = elpv.test_selection(probabilities, types, seed=0)
    assert test.sum() == 656
    for p in np.unique(probabilities):
        stratum = probabilities == p
        assert abs(test[stratum].mean() - 0.25) < 0.02
