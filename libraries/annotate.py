"""Fixing labels: move an image to another class folder, or exclude it, keep ``split.json`` in step, and
append every change to an annotation log (JSON lines) so that it can be reviewed or undone.

Nothing is overwritten: a file whose name is taken in the destination folder gets a new name. Excluded images
go to the hidden folder ``<dataset>/.excluded/<class>/``, which the pipeline ignores.
"""
from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

from .artifacts import load_json, save_json

EXCLUDED_DIR = ".excluded"


class AnnotationError(ValueError):
    """A change that cannot be made; the message says why."""


def free_name(folder: Path, name: str) -> Path:
    """``folder/name``, or ``folder/<stem>_1<suffix>``, ``_2``, ... if that is taken."""
    candidate = folder / name
    stem, suffix = Path(name).stem, Path(name).suffix
    n = 1
    while candidate.exists():
        candidate = folder / f"{stem}_{n}{suffix}"
        n += 1
    return candidate


def read_log(log_path: Path) -> list[dict]:
    path = Path(log_path)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _append_log(log_path: Path, entry: dict) -> dict:
    entry = {"time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), **entry}
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a", encoding="utf-8") as f:  # one line per change, flushed at once
        f.write(json.dumps(entry, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())
    return entry


def _find(split: dict, rel_path: str) -> tuple[str, int]:
    for subset in ("train", "test"):
        for i, (path, _) in enumerate(split[subset]):
            if path == rel_path:
                return subset, i
    raise AnnotationError(f"{rel_path} is not in the split: rerun scripts/1_prepareData.py")


def _move(images_dir: Path, rel_from: str, dest_folder: Path) -> str:
    source = images_dir / rel_from
    if not source.is_file():
        raise AnnotationError(f"{source} does not exist")
    dest_folder.mkdir(parents=True, exist_ok=True)
    target = free_name(dest_folder, source.name)
    os.rename(source, target)
    return target.relative_to(images_dir).as_posix()


def relabel(images_dir: Path, split_path: Path, log_path: Path, rel_path: str, new_label: str) -> str:
    """Move ``rel_path`` into the folder of ``new_label`` (an existing class) and update the split; return the new
    relative path. The image stays in its subset (train or test)."""
    images_dir, split = Path(images_dir), load_json(split_path)
    if new_label not in split["labels"]:
        raise AnnotationError(f"{new_label!r} is not a class of this dataset ({', '.join(split['labels'])})")
    subset, index = _find(split, rel_path)
    old_label = split["labels"][split[subset][index][1]]
    if old_label == new_label:
        return rel_path
    new_path = _move(images_dir, rel_path, images_dir / new_label)
    split[subset][index] = [new_path, split["labels"].index(new_label)]
    save_json(split_path, split)
    _append_log(log_path, {"action": "relabel", "path": rel_path, "new_path": new_path, "old_label": old_label,
                           "new_label": new_label, "subset": subset})
    return new_path


def exclude(images_dir: Path, split_path: Path, log_path: Path, rel_path: str) -> str:
    """Move ``rel_path`` to ``.excluded/<class>/`` and drop it from the split; return where it went."""
    images_dir, split = Path(images_dir), load_json(split_path)
    subset, index = _find(split, rel_path)
    label = split["labels"][split[subset][index][1]]
    new_path = _move(images_dir, rel_path, images_dir / EXCLUDED_DIR / label)
    del split[subset][index]
    save_json(split_path, split)
    _append_log(log_path, {"action": "exclude", "path": rel_path, "new_path": new_path, "old_label": label,
                           "subset": subset})
    return new_path


def label_new(images_dir: Path, labels: list[str], log_path: Path, source: Path, label: str) -> str:
    """Move an unlabelled image ``source`` (from anywhere, e.g. a folder ranked by ``scripts/toLabel.py``) into the
    folder of class ``label``; return its new path relative to ``images_dir``. The split is not touched: rerun
    scripts/1_prepareData.py, which places new images without moving the others."""
    images_dir, source = Path(images_dir), Path(source).resolve()
    if label not in labels:
        raise AnnotationError(f"{label!r} is not a class of this dataset ({', '.join(labels)})")
    if not source.is_file():
        raise AnnotationError(f"{source} does not exist")
    target = free_name(images_dir / label, source.name)
    target.parent.mkdir(parents=True, exist_ok=True)
    os.rename(source, target)
    new_path = target.relative_to(images_dir).as_posix()
    _append_log(log_path, {"action": "label", "path": str(source), "new_path": new_path, "new_label": label})
    return new_path


def undo_last(images_dir: Path, split_path: Path, log_path: Path) -> dict | None:
    """Reverse the latest change not yet undone (the file goes back, under a free name); return its log entry."""
    images_dir, entries = Path(images_dir), read_log(log_path)
    undone = {e["undoes"] for e in entries if e["action"] == "undo"}
    pending = [(i, e) for i, e in enumerate(entries) if e["action"] != "undo" and i not in undone]
    if not pending:
        return None
    index, entry = pending[-1]
    if entry["action"] == "label":  # back to the unlabelled folder it came from
        target = free_name(Path(entry["path"]).parent, Path(entry["path"]).name)
        os.rename(images_dir / entry["new_path"], target)
        _append_log(log_path, {"action": "undo", "undoes": index, "path": entry["new_path"], "new_path": str(target)})
        return entry
    split = load_json(split_path)
    original_folder = (images_dir / entry["path"]).parent
    restored = _move(images_dir, entry["new_path"], original_folder)
    row = [restored, split["labels"].index(entry["old_label"])]
    if entry["action"] == "relabel":
        subset, i = _find(split, entry["new_path"])
        split[subset][i] = row
    else:
        split[entry["subset"]].append(row)
    save_json(split_path, split)
    _append_log(log_path, {"action": "undo", "undoes": index, "path": entry["new_path"], "new_path": restored})
    return entry
