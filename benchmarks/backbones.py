"""Each backbone's size and speed on this machine, side by side: the figures of the README's backbone table.

For every entry of ``libraries.backbones.BACKBONES`` at its native input size: parameters, the size of its
exported ONNX featurizer, featurization speed (onnxruntime, batch 32, preloaded uint8 batches, the CPU path
of script 3) and training speed (torch, batch 16, every block trained, the refinement step without data
loading). The architecture is built without its ImageNet weights (``pretrained=False``): the speed is the same,
and the ResNets' weights need not be on the machine.
    python benchmarks/backbones.py [--backbones efficientnet_lite0 resnet18] [--batches 4]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from libraries import featurize, onnx_export
from libraries.backbones import BACKBONES, FeatureExtractor, build_classifier


def inference_speed(model, size: int, batches: int, tmp: Path) -> tuple[float, float]:
    onnx_export.export_onnx(FeatureExtractor(model.eval()), tmp / "f.onnx", size)
    engine = featurize.OnnxEngine(tmp / "f.onnx")
    batch = np.random.default_rng(0).integers(0, 256, (32, size, size, 3), dtype=np.uint8)
    engine(batch)  # warm-up
    start = time.perf_counter()
    for _ in range(batches):
        engine(batch)
    return 32 * batches / (time.perf_counter() - start), (tmp / "f.onnx").stat().st_size / 2 ** 20


def training_speed(model, size: int, batches: int) -> float:
    model.train().to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randint(0, 256, (16, size, size, 3), dtype=torch.uint8)
    y = torch.randint(0, 2, (16,))
    for step in range(batches + 1):
        if step == 1:  # the first step pays for start-up
            start = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return 16 * batches / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbones", nargs="+", default=list(BACKBONES), choices=list(BACKBONES))
    parser.add_argument("--batches", type=int, default=4)
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPU cores, {torch.get_num_threads()} torch threads, "
          f"LD_PRELOAD={os.environ.get('LD_PRELOAD', '(none)')}")
    print(f"{'backbone':<20} {'px':>4} {'features':>8} {'params':>8} {'ONNX':>8} {'featurize':>12} {'train':>10}")
    for name in args.backbones:
        spec = BACKBONES[name]
        model = build_classifier(name, 2, spec.input_size, pretrained=False)
        params = sum(p.numel() for p in model.backbone.parameters()) / 1e6
        with tempfile.TemporaryDirectory() as tmp:
            forward, onnx_mb = inference_speed(model, spec.input_size, args.batches, Path(tmp))
        train = training_speed(model, spec.input_size, args.batches)
        print(f"{name:<20} {spec.input_size:>4} {spec.feature_dim:>8} {params:>7.1f}M {onnx_mb:>6.1f}MB "
              f"{forward:>7.0f} img/s {train:>5.1f} img/s", flush=True)


if __name__ == "__main__":
    main()
