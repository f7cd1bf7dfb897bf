"""Featurization throughput: the backbone alone against the project's whole featurization, in one run.

(a) forward-only: the fastest CPU engine (onnxruntime) on preloaded, preprocessed batches;
(b) end to end: ``libraries.featurize.featurize`` from JPEG files on disk (read, hash, decode, resize,
    normalise, forward), with an empty cache;
(c) b / a. Target on a 2-core machine: >= 0.85.
It also checks that peak memory grows with the output array only: featurizing 2N images must not hold
N more decoded images than featurizing N.

Images: the ELPV demo cells (300x300), written as JPEGs to a temporary folder.
    python benchmarks/featurize.py [--images 600] [--batch 64] [--size 224]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
from PIL import Image

from libraries import elpv, featurize, onnx_export
from libraries.backbones import BACKBONES, FeatureExtractor, build_classifier


def demo_jpegs(folder: Path, count: int) -> list[Path]:
    paths, _, _ = elpv.read_labels(elpv.package_labels_file())
    source = elpv.package_labels_file().parent
    out = []
    for rel in paths[:count]:
        target = folder / (Path(rel).stem + ".jpg")
        Image.open(source / rel).convert("RGB").save(target, "JPEG", quality=90)
        out.append(target)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=600)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--backbone", default="efficientnet_lite0", choices=list(BACKBONES))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        paths = demo_jpegs(tmp, args.images)
        extractor = FeatureExtractor(build_classifier(args.backbone, 2, args.size).eval())
        onnx_export.export_onnx(extractor, tmp / "f.onnx", args.size)
        engine = featurize.OnnxEngine(tmp / "f.onnx")

        batches = [np.stack([featurize.load_and_preprocess(p, args.size) for p in paths[i:i + args.batch]])
                   for i in range(0, len(paths), args.batch)]
        engine(batches[0])  # warm-up

        def forward_only():
            start = time.perf_counter()
            for batch in batches:
                engine(batch)
            return len(paths) / (time.perf_counter() - start)

        def end_to_end(n, index):
            cache = featurize.FeatureCache(tmp / f"cache{n}-{index}")  # empty: every image is featurized
            tracemalloc.start()
            start = time.perf_counter()
            features, _, failures = featurize.featurize(paths[:n], engine, args.size, cache, batch_size=args.batch,
                                                        progress=False)
            features = np.asarray(features)  # read from the cache, as script 3 does to write features.npz
            elapsed = time.perf_counter() - start
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            assert not failures and features.shape[0] == n
            return n / elapsed, peak, features.nbytes

        # interleaved repeats, best of each: a shared machine's noise only ever slows a run down
        forward, runs = [], []
        for index in range(args.repeats):
            forward.append(forward_only())
            runs.append(end_to_end(len(paths), index))
        forward = max(forward)
        full = max(runs, key=lambda r: r[0])
        half = end_to_end(len(paths) // 2, "half")

    print(f"backbone {args.backbone} at {args.size} px, batch {args.batch}, {len(paths)} JPEGs (300x300), "
          f"{os.cpu_count()} CPU cores, onnxruntime, best of {args.repeats} interleaved runs")
    print(f"(a) forward only, preloaded tensors: {forward:7.1f} img/s")
    print(f"(b) end to end (files -> features):  {full[0]:7.1f} img/s")
    print(f"(c) b / a:                           {full[0] / forward:7.2f}   (target >= 0.85)")
    growth = full[1] - half[1]
    print(f"peak traced memory: {half[1] / 2**20:.1f} MiB for {len(paths) // 2} images, {full[1] / 2**20:.1f} MiB for "
          f"{len(paths)}; growth {growth / 2**20:.1f} MiB vs {(full[2] - half[2]) / 2**20:.1f} MiB of extra output "
          f"(one decoded batch is {args.batch * 3 * args.size ** 2 / 2**20:.1f} MiB)")


if __name__ == "__main__":
    main()
