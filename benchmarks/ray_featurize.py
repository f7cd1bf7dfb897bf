"""Featurization on Ray Data against the local path, on the same images, in one run.

(local) ``featurize.run_batches`` with onnxruntime here: threads decode ahead of the engine, as script 3 does;
(ray N) ``on_ray.map_images`` on a local Ray cluster (``--cpus`` CPUs, default all cores) with N actors: decoding in
        Ray tasks, the same ONNX graph in each actor.
Each is timed from the first image to the last vector, the Ray cluster already started (its start-up is printed
apart, once), and the features are checked equal to the local ones. Ratios are to the local path.

Images: the ELPV demo cells (300x300), written as JPEGs to a temporary folder (as ``benchmarks/featurize.py``).
    python benchmarks/ray_featurize.py [--images 600] [--batch 64] [--workers 1 2] [--cpus 2]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from libraries import featurize, on_ray, onnx_export
from libraries.backbones import FeatureExtractor, build_classifier

from featurize import demo_jpegs  # benchmarks/featurize.py: the same images


def run(stream) -> tuple[float, dict]:
    start = time.perf_counter()
    vectors = {}
    for positions, outputs, _ in stream:
        vectors.update(zip(positions, outputs if outputs is not None else []))
    return time.perf_counter() - start, vectors


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=600)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--cpus", type=int, default=os.cpu_count())
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        paths = demo_jpegs(tmp, args.images)
        onnx_export.export_onnx(FeatureExtractor(build_classifier("efficientnet_lite0", 2, args.size).eval()),
                                tmp / "f.onnx", args.size)
        print(f"EfficientNet-Lite0 at {args.size} px, {len(paths)} JPEGs, batch {args.batch}, {os.cpu_count()} CPU cores")
        seconds, local = run(featurize.run_batches(featurize.OnnxEngine(tmp / "f.onnx"), paths, args.size, args.batch))
        base = len(paths) / seconds
        print(f"{'local':<8} {base:7.1f} img/s  1.00x")
        began = time.perf_counter()
        on_ray.connect(num_cpus=args.cpus)
        print(f"(a local Ray cluster with {args.cpus} CPUs started in {time.perf_counter() - began:.1f} s)")
        for workers in args.workers:
            seconds, found = run(on_ray.map_images(paths, tmp / "f.onnx", args.size, args.batch, workers=workers))
            gap = max(float(np.abs(found[k] - local[k]).max()) for k in local)
            speed = len(paths) / seconds
            print(f"{f'ray {workers}':<8} {speed:7.1f} img/s  {speed / base:.2f}x   (largest difference from local {gap:.1e})",
                  flush=True)
        on_ray.shutdown()


if __name__ == "__main__":
    main()
