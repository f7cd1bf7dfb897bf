"""Refinement throughput on the CPU: training images per second for several configurations, side by side.

Each configuration runs in its own process (so that tcmalloc can be preloaded or not): it fine-tunes
EfficientNet-Lite0 (by default) at 224 px on ELPV demo cells for one epoch of ``--images`` images with
``libraries.refine.refine``, data loading included, and reports img/s of the epoch's steady state (its first
WARM_UP batches, which pay for start-up, excluded) and the one-off time to decode the images into memory where
that is done.

Configurations:
  before      the recipe before this one: batch 16, SGD, every image decoded every epoch, one loader process
              per core, every block trained, the package's separate zero-padding modules, glibc malloc (a fresh
              machine had no tcmalloc)
  before+tc   the same with tcmalloc preloaded (what `make` now installs)
  all-blocks  today's defaults (PARAMETERS.py) but every block trained: batch 32, AdamW, decoded images kept in
              memory, one loader process fewer than the cores, padding inside the convolutions, tcmalloc
  package-pad today's defaults with the package's zero-padding modules (what pad_inside_convolutions saves)
  default     today's defaults (PARAMETERS.py), as `make demo SET="--set classifier=dnn"` refines
  frozen-ort  the defaults with the frozen first blocks run in onnxruntime (rf_frozenInOnnxruntime=True)
  in-process  the defaults with the images loaded in the training process (num_workers=0)
  crops       the defaults, training on smaller crops (RefineConfig.train_size=--crops, 192 px: 6/7 of 224;
              not a parameter, as those networks scored lower at the size they are used at)
  last11      the defaults, training only the backbone's last 11 blocks (2 fewer than the default's 13)
  last6       the defaults, training only the backbone's last 6 blocks
  last11-ort  the last 11 blocks trained, the 7 frozen ones run in onnxruntime

Ratios are to 'before' and 'before+tc'. Target: the default >= 2x 'before+tc'.

A shared machine's speed drifts by 20-30% within minutes (README), so one pass can rank configurations wrongly. The configurations therefore run in
``--rounds`` rounds, each round starting one configuration later than the last; a ratio is taken
within each round, between runs minutes apart, and the summary gives the median img/s and the median ratio
over the rounds, with their range.
    python benchmarks/refine.py [--images 768] [--rounds 3] [--crops 192] [--configs NAME ...]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TCMALLOC = next((str(p) for pattern in ("/usr/lib/*/libtcmalloc_minimal.so.4", "/usr/lib/libtcmalloc_minimal.so.4")
                 for p in sorted(Path("/").glob(pattern.lstrip("/")))), None)
WARM_UP = 3  # batches left out of the steady state: the first ones set up oneDNN's and onnxruntime's kernels and memory
BEFORE = dict(batch_size=16, optimizer="sgd", lr=0.01, weight_decay=0.0005, cache_images=False,
              num_workers=os.cpu_count(), train_blocks=None, package_padding=True)
CONFIGS = {  # name: (RefineConfig fields over PARAMETERS.py's, tcmalloc)
    "before": (BEFORE, False),
    "before+tc": (BEFORE, True),
    "all-blocks": (dict(train_blocks=None), True),
    "package-pad": (dict(package_padding=True), True),
    "default": (dict(), True),
    "frozen-ort": (dict(frozen_in_onnxruntime=True), True),
    "in-process": (dict(num_workers=0), True),
    "crops": (dict(train_size="crops"), True),  # "crops": the --crops given
    "last11": (dict(train_blocks=11), True),
    "last6": (dict(train_blocks=6), True),
    "last11-ort": (dict(train_blocks=11, frozen_in_onnxruntime=True), True),
}


def measure(fields: dict, images: int, backbone: str, size: int, crops: int) -> dict:
    """One epoch of refinement in this process; the per-batch times come from a timing hook on the model."""
    fields = {k: crops if v == "crops" else v for k, v in fields.items()}
    import PARAMETERS
    from libraries import backbones, elpv, refine
    from libraries.backbones import build_classifier
    from libraries.settings import module_parameters

    paths, labels, _ = elpv.read_labels(elpv.package_labels_file())
    root = elpv.package_labels_file().parent
    items = [(root / p, int(probability >= 0.5)) for p, probability in zip(paths[:images], labels[:images])]
    if fields.pop("package_padding", False):
        backbones.pad_inside_convolutions = lambda net: 0  # the package's own zero-padding modules stay
    model = build_classifier(backbone, 2, size)
    stamps = []
    model.register_forward_pre_hook(lambda module, args: stamps.append(time.perf_counter()) if module.training else None)
    config = refine.RefineConfig.from_parameters(module_parameters(PARAMETERS)[0], size, epochs=1, device="cpu", **fields)
    start = time.perf_counter()
    history, _ = refine.refine(model, items, [], config, progress=False)
    total = time.perf_counter() - start
    batches = len(stamps)
    per_batch = (stamps[-1] - stamps[WARM_UP]) / (batches - 1 - WARM_UP)  # from the start of batch WARM_UP + 1 to the last's
    return {"img_s": config.batch_size / per_batch, "epoch_s": history[0]["seconds"], "setup_s": total - history[0]["seconds"],
            "batches": batches}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=768)
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--rounds", type=int, default=3, help="passes over the configurations, each in a rotated order")
    parser.add_argument("--crops", type=int, default=192, help="the training crops' size in the 'crops' configuration")
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(json.loads(args.child), args.images, args.backbone, args.size, args.crops)))
        return

    print(f"{args.backbone} at {args.size} px, one epoch of {args.images} ELPV cells (steady state: from batch "
          f"{WARM_UP + 1} on), {os.cpu_count()} CPU cores, {args.rounds} rounds, "
          f"tcmalloc: {TCMALLOC or 'not installed'}")
    names = [n for n in args.configs if not (CONFIGS[n][1] and not TCMALLOC)]
    for name in sorted(set(args.configs) - set(names)):
        print(f"{name:<12} skipped: tcmalloc is not installed (make tcmalloc)")
    if not names:
        return
    rounds = []
    for r in range(args.rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        results = {name: child(name, args) for name in order}
        rounds.append(results)
        print(f"round {r + 1}: " + ", ".join(f"{n} {results[n]['img_s']:.1f}" for n in order) + " img/s", flush=True)
    print(f"\n{'configuration':<12} {'img/s: median (range)':>22} {'epoch s':>8} {'set-up s':>9}" + "".join(
        f"   {'vs. ' + b + ': median (range)':>28}" for b in ("before", "before+tc") if b in names))
    for name in names:
        line = (f"{name:<12} {spread([r[name]['img_s'] for r in rounds], '{:.1f}'):>22}"
                f" {statistics.median(r[name]['epoch_s'] for r in rounds):8.0f}"
                f" {statistics.median(r[name]['setup_s'] for r in rounds):9.0f}")
        for b in ("before", "before+tc"):
            if b in names:
                line += f"   {spread([r[name]['img_s'] / r[b]['img_s'] for r in rounds], '{:.2f}x'):>28}"
        print(line)


def child(name: str, args) -> dict:
    """One configuration measured in a process of its own (with tcmalloc preloaded or not)."""
    fields, tcmalloc = CONFIGS[name]
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    if tcmalloc:
        env["LD_PRELOAD"] = TCMALLOC
    out = subprocess.run([sys.executable, __file__, "--images", str(args.images), "--backbone", args.backbone,
                          "--size", str(args.size), "--crops", str(args.crops), "--child", json.dumps(fields)],
                         cwd=REPO, env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def spread(values: list, form: str) -> str:
    """'median (lowest-highest)' of the rounds' values."""
    return f"{form.format(statistics.median(values))} ({form.format(min(values))}-{form.format(max(values))})"


if __name__ == "__main__":
    main()
