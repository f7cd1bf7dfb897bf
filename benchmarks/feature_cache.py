"""What the feature cache costs its driver at scale: the cache of parts against one file of every vector, in one run.

A cache of ``--vectors`` synthetic 1280-d vectors is written as ``featurize.FeatureCache`` writes it (parts of
``--part`` vectors, as flushes leave them), and as one ``.npz`` of every digest and vector, the single-file cache
this project had before (read whole at the start of a run, rewritten whole at every save). For each, measured in
a fresh process so that memory is its own:
  open    seconds and resident memory added to open the cache, as script 3 does before featurizing;
  lookup  seconds to find which of all the digests are cached (every one is), and the memory added by then;
  save    seconds to save one minute's worth of new vectors (``--new``, default 60 s at 1,764 img/s on a GPU).
Ratios are parts over single file.
    python benchmarks/feature_cache.py [--vectors 1000000] [--part 100000] [--new 105840] [--dir /tmp]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from libraries import featurize
from libraries.artifacts import save_npz

WIDTH = 1280


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def digests_of(start: int, stop: int) -> np.ndarray:
    return np.array([f"{i:032x}" for i in range(start, stop)], dtype="S32")


def vectors_of(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, WIDTH), dtype=np.float32)


def build(folder: Path, n: int, part: int) -> None:
    cache = featurize.FeatureCache(folder / "parts")
    cache.MAX_SMALL_PARTS = 10**9  # the parts as flushes leave them, never merged here
    for start in range(0, n, part):
        cache.add(digests_of(start, min(n, start + part)), vectors_of(min(part, n - start), start))
        cache.flush()
    # the single-file kind: every digest and vector in one .npz (written uncompressed, as save_npz does)
    save_npz(folder / "single.npz", digests=digests_of(0, n).astype(str),
             vectors=np.concatenate([np.asarray(v) for _, v in cache._parts]))


def measure(kind: str, folder: Path, n: int, new: int) -> dict:
    """In this (fresh) process: open, look up, save a minute's worth, the way ``kind`` does it."""
    queries = digests_of(0, n)
    fresh = digests_of(n, n + new)
    added = vectors_of(new, 99)
    before = rss_mb()
    start = time.perf_counter()
    if kind == "parts":
        cache = featurize.FeatureCache(folder / "parts")
        cache.MAX_SMALL_PARTS = 10**9
    else:  # what the single-file cache did: every vector into a dict keyed by digest
        data = np.load(folder / "single.npz")
        cache = dict(zip(data["digests"].tolist(), data["vectors"]))
    opened = time.perf_counter() - start
    grown = rss_mb() - before
    start = time.perf_counter()
    found = cache.contains(queries) if kind == "parts" else np.array([d in cache for d in queries.astype(str).tolist()])
    looked = time.perf_counter() - start
    indexed = rss_mb() - before
    assert found.all()
    start = time.perf_counter()
    if kind == "parts":
        cache.add(fresh, added)
        cache.flush()
    else:
        cache.update(zip(fresh.astype(str).tolist(), added))
        save_npz(folder / "single.npz", digests=np.array(list(cache)), vectors=np.stack(list(cache.values())))
    saved = time.perf_counter() - start
    return {"open_s": opened, "open_mb": grown, "lookup_s": looked, "lookup_mb": indexed, "save_s": saved}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vectors", type=int, default=1_000_000)
    parser.add_argument("--part", type=int, default=100_000)
    parser.add_argument("--new", type=int, default=105_840, help="vectors saved at once (one minute's worth)")
    parser.add_argument("--dir", default=tempfile.gettempdir())
    parser.add_argument("--measure", nargs=2, metavar=("KIND", "FOLDER"), help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure[0], Path(args.measure[1]), args.vectors, args.new)))
        return
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        start = time.perf_counter()
        build(Path(tmp), args.vectors, args.part)
        size = sum(p.stat().st_size for p in Path(tmp, "parts").iterdir()) / 1e9
        print(f"{args.vectors:,} vectors of {WIDTH} float32 ({size:.1f} GB) written in {time.perf_counter() - start:.0f} s; "
              f"saving {args.new:,} new ones")
        results = {}
        for kind in ("single", "parts"):
            out = subprocess.run([sys.executable, __file__, "--vectors", str(args.vectors), "--new", str(args.new),
                                  "--measure", kind, tmp], check=True, capture_output=True, text=True,
                                 env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}).stdout
            results[kind] = json.loads(out.splitlines()[-1])
    print(f"{'':28}{'single file':>14}{'parts':>14}{'ratio':>10}")
    for key, label in (("open_s", "open (s)"), ("open_mb", "memory to open (MB)"), ("lookup_s", "look up all (s)"),
                       ("lookup_mb", "memory after looking up (MB)"),
                       ("save_s", "save a minute's worth (s)")):
        a, b = results["single"][key], results["parts"][key]
        print(f"{label:28}{a:14.2f}{b:14.2f}{b / a if a else float('nan'):9.3f}x")


if __name__ == "__main__":
    main()
