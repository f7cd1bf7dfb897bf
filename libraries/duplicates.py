"""Exact and near-duplicate images: the one owner of how images are hashed and compared.

Each image gets ``imagehash.dhash`` with ``HASH_SIZE`` = 16 (256 bits: the signs of horizontal brightness
differences on a 17 x 16 grey thumbnail). Two images whose hashes differ in at most ``max_distance`` bits are
candidates; a candidate pair is a near-duplicate only if its fine structure matches too (``detail``: the
correlation of 64 x 64 grey thumbnails less their blur is at least ``MIN_DETAIL_CORRELATION``). The connected
groups of near-duplicate pairs are the duplicate groups. A group whose members lie on both sides of the
train/test split is a *leak*: the test set then scores images the model has, in effect, seen.

How far apart copies land (measured on this project's photos, on generated fabric textures and on ELPV):
- dhash: a re-saved or re-compressed copy, 0-4 bits; the same photo resized to 2/3 or 1/2 and saved as JPEG,
  mostly within 16 and up to about 30 bits; distinct photos at least 34 bits apart. ``DEFAULT_MAX_DISTANCE`` = 10
  finds re-saved and re-compressed copies and most resizes. But fine textures (fabric weaves, dots, grids)
  average out on a 17 x 16 thumbnail: unrelated stripes, dots and checks under the same light came 5-10 bits
  apart, which is why candidates are confirmed.
- detail correlation: copies re-saved at JPEG quality 75, or resized to 2/3 or 1/2, 0.94-1.00; distinct photos
  at most 0.13; the unrelated textures above -0.01 to 0.06. ELPV's neighbouring cells of one module (the same
  busbar grid on a uniform cell) lie 3-10 dhash bits and 0.90-1.00 apart: they are grouped, so the split keeps
  such lookalikes together.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import imagehash
import numpy as np
from PIL import Image, ImageFilter
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from tqdm.auto import tqdm

from .artifacts import load_csv, save_csv
from .images import ImageError, read_image

HASH_SIZE = 16
HASH_BITS = HASH_SIZE * HASH_SIZE
DEFAULT_MAX_DISTANCE = 10
DETAIL_SIZE = 64
MIN_DETAIL_CORRELATION = 0.8


def image_hash(source: str | Path | bytes) -> np.ndarray:
    """The image's dhash as ``HASH_BITS`` booleans; raises ``images.ImageError`` if it cannot be read."""
    return imagehash.dhash(Image.fromarray(read_image(source)), hash_size=HASH_SIZE).hash.ravel()


def detail(source: str | Path | bytes) -> np.ndarray:
    """The image's fine structure, for confirming a candidate pair: a ``DETAIL_SIZE`` square grey thumbnail less
    its Gaussian blur (2 px), centred and scaled to length 1, flattened (the dot product of two is their
    correlation)."""
    grey = Image.fromarray(read_image(source)).convert("L").resize((DETAIL_SIZE, DETAIL_SIZE), Image.BILINEAR)
    fine = np.asarray(grey, np.float32) - np.asarray(grey.filter(ImageFilter.GaussianBlur(2)), np.float32)
    fine -= fine.mean()
    return (fine / max(float(np.linalg.norm(fine)), 1e-6)).ravel()


def hash_images(paths: list[Path], workers: int | None = None, progress: bool = True
                ) -> tuple[np.ndarray, list[tuple[Path, str]]]:
    """Hashes of ``paths`` as an (N, HASH_BITS) boolean array; an unreadable file gets an all-False row and is
    listed in the second value with its reason."""
    workers = workers or min(8, os.cpu_count() or 1)

    def one(path):
        try:
            return image_hash(path), None
        except ImageError as err:
            return np.zeros(HASH_BITS, bool), err.reason

    hashes, bad = np.zeros((len(paths), HASH_BITS), bool), []
    with ThreadPoolExecutor(workers) as pool:
        results = pool.map(one, paths)
        for i, (h, reason) in enumerate(tqdm(results, total=len(paths), desc="hashing images", unit="img",
                                             disable=not progress)):
            hashes[i] = h
            if reason:
                bad.append((paths[i], reason))
    return hashes, bad


def close_pairs(hashes: np.ndarray, max_distance: int, chunk: int = 2048) -> list[tuple[int, int, int]]:
    """Every pair (i, j, distance) with i < j whose hashes differ in at most ``max_distance`` bits. All pairs are
    compared, a block of rows at a time (a few seconds for 10,000 images)."""
    bits = hashes.astype(np.float32)
    pairs = []
    for start in range(0, len(bits), chunk):
        block = bits[start:start + chunk]
        agree = block @ bits.T + (1 - block) @ (1 - bits).T
        distance = np.rint(bits.shape[1] - agree).astype(np.int32)
        rows, cols = np.nonzero(distance <= max_distance)
        rows = rows + start
        keep = rows < cols
        pairs += [(int(i), int(j), int(distance[i - start, j])) for i, j in zip(rows[keep], cols[keep])]
    return pairs


def groups(hashes: np.ndarray, max_distance: int, confirm=None) -> list[list[int]]:
    """The duplicate groups (two or more members) as lists of row indices, each sorted, in order of their first
    member: the connected components of the pairs ``close_pairs`` finds (and ``confirm(i, j)`` accepts, if given)."""
    pairs = [(i, j) for i, j, _ in close_pairs(hashes, max_distance) if confirm is None or confirm(i, j)]
    if not pairs:
        return []
    i, j = zip(*pairs)
    graph = coo_matrix((np.ones(len(i)), (i, j)), shape=(len(hashes), len(hashes)))
    _, component = connected_components(graph, directed=False)
    members: dict[int, list[int]] = {}
    for row, c in enumerate(component):
        members.setdefault(int(c), []).append(row)
    return sorted((m for m in members.values() if len(m) > 1), key=lambda m: m[0])


def find(paths: list[Path], max_distance: int = DEFAULT_MAX_DISTANCE, progress: bool = True
         ) -> tuple[list[list[Path]], list[tuple[Path, str]]]:
    """The duplicate groups among ``paths`` (as lists of paths), and the files that could not be read. Candidate
    pairs by dhash are kept only if their fine structure matches too (``detail``), read again for them alone."""
    paths = list(paths)
    hashes, bad = hash_images(paths, progress=progress)
    unreadable = {p for p, _ in bad}
    keep = [k for k, p in enumerate(paths) if p not in unreadable]
    readable = [paths[k] for k in keep]
    details: dict[int, np.ndarray] = {}

    def same_detail(i: int, j: int) -> bool:
        for k in (i, j):
            if k not in details:
                details[k] = detail(readable[k])
        return float(details[i] @ details[j]) >= MIN_DETAIL_CORRELATION

    found = groups(hashes[keep], max_distance, confirm=same_detail)
    return [[readable[k] for k in group] for group in found], bad


def leaks(duplicate_groups: list[list[str]], side: dict[str, str]) -> list[list[str]]:
    """The groups with members on both sides: ``side`` maps each member to 'train' or 'test' (members in
    neither are ignored)."""
    return [g for g in duplicate_groups if {"train", "test"} <= {side.get(p) for p in g}]


CSV_COLUMNS = ("group", "path", "label", "side", "leak", "label_conflict")


def report_rows(duplicate_groups: list[list[str]], split: dict) -> list[dict]:
    """One row per member of each group (paths relative to the image folder, as ``split.json`` has them), with its
    class, its side ('train', 'test', or '' when the split left it out), whether its group leaks, and whether its
    group holds more than one class (a label conflict: the same picture under two labels)."""
    labels = split["labels"]
    where = {p: (labels[k], side) for side in ("train", "test") for p, k in split[side]}
    leaking = {id(g) for g in leaks(duplicate_groups, {p: s for p, (_, s) in where.items()})}
    conflicting = {id(g) for g in duplicate_groups if len({where[p][0] for p in g if p in where}) > 1}
    return [{"group": number, "path": p, "label": where.get(p, ("", ""))[0], "side": where.get(p, ("", ""))[1],
             "leak": id(g) in leaking, "label_conflict": id(g) in conflicting}
            for number, g in enumerate(duplicate_groups, 1) for p in g]


def write_csv(path: Path, rows: list[dict]) -> None:
    save_csv(path, rows, CSV_COLUMNS)


def read_csv(path: Path) -> list[dict]:
    return [{**row, "group": int(row["group"]), "leak": row["leak"] == "True", "label_conflict": row.get("label_conflict") == "True"}
            for row in load_csv(path)]


def summary(rows: list[dict]) -> dict:
    """Counts for the console, split.json, the report and MLflow."""
    groups = {r["group"] for r in rows}
    leaking = {r["group"] for r in rows if r["leak"]}
    conflicting = {r["group"] for r in rows if r["label_conflict"]}
    return {"groups": len(groups), "images": len(rows), "leaking_groups": len(leaking), "conflicting_groups": len(conflicting)}


def describe(rows: list[dict], max_distance: int, dedicated_test: bool, kept_together: bool, examples: int = 3) -> str:
    """What the console says about duplicates and leaks, with a few examples and what to do."""
    counts = summary(rows)
    if not counts["groups"]:
        return f"near-duplicates (dhash within {max_distance} bits, alike in fine detail): none"
    lines = [f"near-duplicates (dhash within {max_distance} bits, alike in fine detail): {counts['groups']} group(s), {counts['images']} images; "
             f"{counts['leaking_groups']} group(s) straddle train and test (leaks); {counts['conflicting_groups']} hold "
             f"more than one class (label conflicts); all in duplicates.csv"]
    leaking = sorted({r["group"] for r in rows if r["leak"]})
    for number in leaking[:examples]:
        members = [f"{r['path']} ({r['side']})" for r in rows if r["group"] == number]
        lines.append(f"  leak: {', '.join(members)}")
    conflicting = sorted({r["group"] for r in rows if r["label_conflict"] and not r["leak"]})
    for number in conflicting[:examples]:
        members = [r["path"] for r in rows if r["group"] == number]
        lines.append(f"  label conflict: {', '.join(members)}: the same picture under two classes; keep one")
    if leaking and dedicated_test:
        lines.append("  the test set comes from dedicatedTestImages.tsv and is kept as it is: look at the groups with "
                     "leak=True in duplicates.csv (report.html shows them); where they are copies, delete the training "
                     "copy or take the image out of the list, then rerun this script")
    elif leaking and not kept_together:
        lines.append("  set dup_boKeepTogether=True to keep each group on one side")
    return "\n".join(lines)
