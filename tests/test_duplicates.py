"""Near-duplicates and leaks: planted copies are found, and the group-aware split keeps each group on one side."""
import io
import json

import numpy as np
from PIL import Image

from libraries import duplicates
from libraries.dataset import find_classes, make_split

from conftest import run_script


def field_image(index: int, size: int = 96) -> Image.Image:
    """A smooth random colour field: distinct for every index, far apart in dhash."""
    rng = np.random.default_rng(10_000 + index)
    coarse = rng.uniform(0, 255, (6, 6, 3)).astype(np.uint8)
    return Image.fromarray(coarse).resize((size, size), Image.Resampling.BICUBIC)


def make_fields(root, counts: dict[str, int]):
    n = 0
    for label, count in counts.items():
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            field_image(n).save(root / label / f"{label}_{i:03d}.png")
            n += 1
    return root


def reencoded(path, scale: float = 0.7, quality: int = 80) -> bytes:
    image = Image.open(path).convert("RGB")
    buffer = io.BytesIO()
    image.resize((round(image.width * scale), round(image.height * scale))).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def test_copies_are_close_and_distinct_images_are_not(tmp_path):
    make_fields(tmp_path, {"a": 30})
    files = sorted((tmp_path / "a").glob("*.png"))
    (tmp_path / "a" / "copy.jpg").write_bytes(reencoded(files[3]))
    hashes, bad = duplicates.hash_images(files + [tmp_path / "a" / "copy.jpg"], progress=False)
    assert not bad
    pairs = duplicates.close_pairs(hashes, duplicates.DEFAULT_MAX_DISTANCE)
    assert [(i, j) for i, j, _ in pairs] == [(3, 30)], pairs
    assert duplicates.groups(hashes, duplicates.DEFAULT_MAX_DISTANCE) == [[3, 30]]


def fine_texture(kind: str, seed: int, size: int = 192) -> Image.Image:
    """A fine weave (stripes or checks at a random angle and period) under the same soft light across the image."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size].astype(float)
    angle, period = rng.uniform(0, np.pi), rng.uniform(8, 14)
    u, v = x * np.cos(angle) + y * np.sin(angle), -x * np.sin(angle) + y * np.cos(angle)
    weave = np.sin(2 * np.pi * u / period) > 0
    if kind == "checked":
        weave ^= np.sin(2 * np.pi * v / period) > 0
    grey = 120 + 40 * weave + 60 * np.sin(np.pi * x / size) + rng.normal(0, 8, (size, size))
    return Image.fromarray(np.clip(grey, 0, 255).astype(np.uint8)).convert("RGB")


def test_lookalike_fine_textures_are_not_duplicates_but_their_copies_are(tmp_path):
    # unrelated weaves average out to alike dhash thumbnails (the light dominates), so dhash alone calls them copies
    for k, kind in enumerate(["striped"] * 4 + ["checked"] * 4):
        fine_texture(kind, k).save(tmp_path / f"{kind}_{k}.png")
    (tmp_path / "copy_of_striped_0.jpg").write_bytes(reencoded(tmp_path / "striped_0.png", scale=0.6, quality=75))
    files = sorted(tmp_path.iterdir())
    hashes, _ = duplicates.hash_images(files, progress=False)
    candidates = {(i, j) for i, j, _ in duplicates.close_pairs(hashes, duplicates.DEFAULT_MAX_DISTANCE)}
    assert len(candidates) > 3, candidates  # the lookalikes are dhash candidates ...
    groups, _ = duplicates.find(files, progress=False)
    assert [[p.name for p in g] for g in groups] == [["copy_of_striped_0.jpg", "striped_0.png"]]  # ... but not copies


def test_unreadable_files_are_listed_not_grouped(tmp_path):
    make_fields(tmp_path, {"a": 3})
    broken = tmp_path / "a" / "broken.jpg"
    broken.write_bytes(b"not an image")
    groups, bad = duplicates.find(sorted((tmp_path / "a").iterdir()), progress=False)
    assert groups == [] and [p.name for p, _ in bad] == ["broken.jpg"]


def test_group_aware_split_keeps_groups_on_one_side(tmp_path):
    make_fields(tmp_path, {"a": 40, "b": 40})
    # five groups of three copies each, within and across classes
    sources = [tmp_path / "a" / f"a_{i:03d}.png" for i in range(5)]
    groups = []
    for k, source in enumerate(sources):
        copy1, copy2 = tmp_path / "a" / f"copy{k}_1.jpg", tmp_path / ("b" if k == 0 else "a") / f"copy{k}_2.jpg"
        copy1.write_bytes(reencoded(source))
        copy2.write_bytes(reencoded(source, scale=1.3, quality=90))
        groups.append({source, copy1, copy2})
    classes, _ = find_classes(tmp_path)
    found, _ = duplicates.find(sorted(p for files in classes.values() for p in files), progress=False)
    assert [set(g) for g in found] == sorted(groups, key=min)
    split, _ = make_split(classes, tmp_path, 0.5, 0, together=found)
    rel = [[p.relative_to(tmp_path).as_posix() for p in g] for g in found]
    rows = duplicates.report_rows(rel, split)
    conflicts = {r["group"] for r in rows if r["label_conflict"]}
    assert conflicts == {1} and duplicates.summary(rows)["conflicting_groups"] == 1  # copy0_2 went to class b
    for seed in range(6):
        split, _ = make_split(classes, tmp_path, 0.5, seed, together=found)
        side = {tmp_path / p: s for s in ("train", "test") for p, _ in split[s]}
        assert all(len({side[p] for p in g}) == 1 for g in groups), seed
        assert 0.4 < len(split["test"]) / (len(split["train"]) + len(split["test"])) < 0.6
    leaky = [seed for seed in range(6)
             if duplicates.leaks([[str(p) for p in g] for g in found],
                                 {str(tmp_path / p): s for s in ("train", "test")
                                  for p, _ in make_split(classes, tmp_path, 0.5, seed)[0][s]})]
    assert leaky, "without grouping, a 50/50 split of 3-image groups should leak for some seed"


def test_planted_leak_is_reported_by_script_1(tmp_path):
    images = make_fields(tmp_path / "images" / "toy", {"a": 16, "b": 16})
    test_list = [f"{c}/{c}_{i:03d}.png" for c in "ab" for i in range(12, 16)]
    planted = []
    for k, c in enumerate("aabba"):  # 5 training images copied into the test set under other names
        source = images / c / f"{c}_{k:03d}.png"
        target = images / c / f"holdout_{k}.png"
        if k == 0:
            target = target.with_suffix(".jpg")
            target.write_bytes(reencoded(source, scale=0.8))  # re-encoded as JPEG at another size
        else:
            target.write_bytes(source.read_bytes())
        test_list.append(f"{c}/{target.name}")
        planted.append({f"{c}/{source.name}", f"{c}/{target.name}"})
    (images / "dedicatedTestImages.tsv").write_text("\n".join(test_list) + "\n")
    out = run_script("1_prepareData.py", tmp_path, "datasetName=toy").stdout
    assert "5 group(s) straddle train and test (leaks)" in out, out
    assert "dedicatedTestImages.tsv and is kept as it is" in out
    rows = duplicates.read_csv(tmp_path / "proc" / "toy" / "duplicates.csv")
    found = {}
    for row in rows:
        found.setdefault(row["group"], set()).add(row["path"])
        assert row["leak"] and row["side"] == ("test" if "holdout" in row["path"] else "train")
    assert sorted(found.values(), key=min) == sorted(planted, key=min)
    split = json.loads((tmp_path / "proc" / "toy" / "split.json").read_text())
    assert split["duplicates"]["leaking_groups"] == 5 and split["duplicates"]["max_distance"] == 10
    assert split["duplicates"]["conflicting_groups"] == 0

    # without the fixed test list, the group-aware split keeps every planted pair on one side
    (images / "dedicatedTestImages.tsv").unlink()
    out = run_script("1_prepareData.py", tmp_path, "datasetName=toy", "ratioTrainTest=0.5").stdout
    assert "5 group(s), 10 images; 0 group(s) straddle" in out, out
    rows = duplicates.read_csv(tmp_path / "proc" / "toy" / "duplicates.csv")
    assert len(rows) == 10 and not any(r["leak"] for r in rows)
