"""Fine-tuning a Classifier end to end (or only its last blocks), with checkpoints that let a killed run resume.

It watches a validation set (training images held out from training; the test set is never seen before script 5)
and keeps the weights of the epoch that did best on it.

The recipe: AdamW (or SGD with momentum) with weight decay; a learning rate that warms up over the first epoch
and then follows a cosine down to zero (or, when ``lr_per_epoch`` is given, one rate per epoch, as in the
original sample); label smoothing; class-balanced sampling; dropout before the new head; train-time augmentation from
``presets``; optionally only the last N blocks of the backbone trained (the others, batch-norm statistics
included, stay as pretrained); the trained blocks' batch-norm statistics made to follow the new images even in a
short run (``batch_norm_momentum``). Images are decoded and shrunk once and kept in memory when they fit. CUDA with
mixed precision when asked for, the CPU otherwise. Under torchrun, each process trains on its shard of every epoch
with DistributedDataParallel (``distributed``), and the first one alone writes the checkpoint.
"""
from __future__ import annotations

import math
import os
import tempfile
import time
from functools import partial
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler, WeightedRandomSampler
from tqdm.auto import tqdm

from . import distributed
from .artifacts import save_torch
from .backbones import Classifier, FrozenPrefix
from .errors import BadParameter
from .images import ImageError, read_image
from .onnx_export import export_onnx, open_session
from .presets import eval_preprocess, resize_square, train_load_size, train_transform

PRETRAINED_STATISTICS_LEFT = 0.01  # at most this share of ImageNet's batch-norm statistics is left after refinement
CACHE_BUDGET_BYTES = 2 * 1024 ** 3  # decoded training and validation images are kept in memory up to this size


class ImageListDataset(Dataset):
    """(path, label id) pairs -> (transformed image, label id). Each image is decoded and brought to a fixed
    square size by ``prepare`` (the same whether or not it is cached), then ``transform`` runs on it. An image
    that fails to decode yields None, which ``collate`` drops."""

    def __init__(self, items: list[tuple[Path, int]], prepare: Callable, transform: Callable, min_size: int):
        self.items, self.prepare, self.transform, self.min_size = items, prepare, transform, min_size
        self.cache: list | None = None

    def __len__(self):
        return len(self.items)

    def load(self, index):
        if self.cache is not None:
            return self.cache[index]
        try:
            return self.prepare(read_image(self.items[index][0], min_size=self.min_size))
        except ImageError:
            return None

    def __getitem__(self, index):
        image = self.load(index)
        if image is None:
            return None
        return (torch.as_tensor(self.transform(image)), self.items[index][1])

    def fill_cache(self, workers: int, desc: str, progress: bool = True) -> None:
        """Decode every image once, with ``workers`` processes, and keep it (None where it cannot be read)."""
        # its own generator: iterating a loader draws a seed, which must not move the global one that augments
        loader = DataLoader(_Loads(self), batch_size=None, num_workers=workers, collate_fn=_as_is,  # arrays stay arrays
                            generator=torch.Generator().manual_seed(0))
        self.cache = list(tqdm(loader, total=len(self), desc=desc, unit="img", disable=not progress, leave=False))


def _as_is(item):
    return item  # a named function, not a lambda, so that spawned loader processes can unpickle it


class _Loads(Dataset):
    def __init__(self, dataset: ImageListDataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        return self.dataset.load(index)


def collate(batch):
    batch = [b for b in batch if b is not None]
    if not batch:
        return None
    return torch.stack([b[0] for b in batch]), torch.tensor([b[1] for b in batch])


@dataclass
class RefineConfig:
    """How to refine: the rf_* parameters (``from_parameters``), under the names this module uses."""
    input_size: int  # what the network is validated (and later used) at
    epochs: int
    optimizer: str  # 'adamw' (weight_decay is decoupled) or 'sgd' (with momentum; weight_decay is L2)
    lr: float  # peak rate of the warm-up + cosine schedule
    lr_per_epoch: list | None  # one rate per epoch (the last repeating) instead of the schedule
    momentum: float
    weight_decay: float
    batch_size: int
    label_smoothing: float
    train_blocks: int | None  # train only the last N blocks of the backbone (0: only the new head); None: all
    balance_classes: bool
    augmentation: str
    max_train_images: int | None = None
    device: str = "auto"
    num_workers: int | None = None
    cache_images: bool = True  # keep the decoded images in memory when they fit CACHE_BUDGET_BYTES (same results)
    seed: int = 0
    # the size of the random crops it trains on (None: input_size). Not a parameter: smaller crops train faster
    # (1.3x at 192 px for 224; benchmarks/refine.py) but leave the batch-norm statistics those of the smaller
    # size, and the network did worse at the size it is used at (ELPV: 87.5% against 88.9% at 192 px; digits:
    # 62.5% against 100% at 160 px)
    train_size: int | None = None
    # on the CPU, run the frozen first blocks in onnxruntime (run_frozen_blocks_in_onnxruntime); False: in torch
    frozen_in_onnxruntime: bool = False

    @classmethod
    def from_parameters(cls, params: dict, input_size: int, **overrides) -> "RefineConfig":
        """The configuration that the pipeline's parameters (PARAMETERS.py and --set) describe."""
        p = params
        return cls(**{**dict(
            input_size=input_size, epochs=p["rf_maxEpochs"], optimizer=p["rf_optimizer"], lr=p["rf_learningRate"],
            lr_per_epoch=p["rf_lrPerMb"], momentum=p["rf_momentumPerMb"], weight_decay=p["rf_l2RegWeight"],
            batch_size=p["rf_mbSize"], label_smoothing=p["rf_labelSmoothing"],
            train_blocks=0 if p["rf_boFreezeWeights"] else p["rf_trainLastBlocks"],
            balance_classes=p["rf_boBalanceTrainingSet"], augmentation=p["rf_augmentation"],
            max_train_images=p["rf_maxTrainImages"], device=p["rf_device"], num_workers=p["rf_numWorkers"],
            frozen_in_onnxruntime=p["rf_frozenInOnnxruntime"],
            seed=p["randomSeed"]), **overrides})

    @property
    def train_resolution(self) -> int:
        return self.train_size or self.input_size


def seed_everything(seed: int) -> None:
    """Seed every random generator a refinement uses, before the model's new head is initialised, so that the
    same parameters give the same refined network."""
    import random

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(requested: str) -> torch.device:
    if requested == "cuda" and not torch.cuda.is_available():
        raise BadParameter("rf_device='cuda' but torch sees no CUDA GPU: use rf_device='auto' or 'cpu'")
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(requested)


def learning_rate(schedule: list[float], epoch: int) -> float:
    """The rate of a 0-based epoch; the last value of the schedule repeats."""
    return float(schedule[min(epoch, len(schedule) - 1)])


def scheduled_rate(config: RefineConfig, progress: float) -> float:
    """The learning rate at ``progress`` epochs into training (a float: 2.5 is halfway through the third epoch).
    With ``lr_per_epoch`` it is that epoch's rate; otherwise a linear warm-up over the first epoch (or the
    first tenth of training, if shorter) to ``lr``, then a cosine down to zero at the last step."""
    if config.lr_per_epoch:
        return learning_rate(config.lr_per_epoch, int(progress))
    warmup = min(1.0, config.epochs / 10)
    if progress < warmup:
        return config.lr * (progress + 1e-3) / warmup
    done = (progress - warmup) / max(config.epochs - warmup, 1e-9)
    return config.lr * 0.5 * (1 + math.cos(math.pi * min(done, 1.0)))


def make_optimizer(config: RefineConfig, parameters: list) -> torch.optim.Optimizer:
    if config.optimizer == "adamw":
        return torch.optim.AdamW(parameters, lr=scheduled_rate(config, 0), weight_decay=config.weight_decay)
    if config.optimizer == "sgd":
        return torch.optim.SGD(parameters, lr=scheduled_rate(config, 0), momentum=config.momentum,
                               weight_decay=config.weight_decay)
    raise BadParameter(f"rf_optimizer must be 'sgd' or 'adamw', got {config.optimizer!r}")


def default_workers(requested: int | None) -> int:
    """Image-loading processes: as asked, else one fewer than the CPU cores (at least 1, at most 8), so that on
    a small machine the loader does not take cores from training."""
    if requested is not None:
        return requested
    return max(1, min(8, (os.cpu_count() or 1) - 1))


def freeze_early_blocks(model: Classifier, train_blocks: int | None) -> list[torch.nn.Module]:
    """Keep all but the last ``train_blocks`` blocks of the backbone as pretrained (None: train everything);
    returns the frozen modules, which must stay in eval mode so that their batch-norm statistics stay too."""
    if train_blocks is None:
        return []
    frozen = [module for group in model.trunk_blocks()[:frozen_block_count(model, train_blocks)] for module in group]
    for module in frozen:
        module.requires_grad_(False)
    return frozen


def frozen_block_count(model: Classifier, train_blocks: int) -> int:
    """How many of the backbone's blocks, input side first, stay pretrained when only the last ``train_blocks`` train."""
    return max(0, len(model.trunk_blocks()) - train_blocks)


def run_frozen_blocks_in_onnxruntime(model: Classifier, train_blocks: int | None, size: int) -> FrozenPrefix | None:
    """The frozen first blocks (all but the last ``train_blocks``) exported to ONNX and run by onnxruntime on
    (B, size, size, 3) uint8 batches, for ``model.prefix``: they compute the same (to about 1e-4; frozen blocks
    are in eval mode, so their batch norms fold into the convolutions), and onnxruntime's fused kernels take
    about 0.4x torch's time for them (Lite0 at 224 px, its first 5 blocks, batch 32: 0.15 -> 0.06 s), a sixth
    of a training step. Its threads sleep rather than spin while they wait, so as not to take the cores from
    torch's. None where nothing is frozen or the backbone cannot be split."""
    if train_blocks is None:
        return None
    count = frozen_block_count(model, train_blocks)
    module = model.prefix_module(count)
    if module is None:
        return None
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "frozen_blocks.onnx"
        with torch.no_grad():
            export_onnx(module, path, size, output_names=("blocks",))
        session = open_session(path, threads=torch.get_num_threads(), spinning=False)

    def run(x: torch.Tensor) -> torch.Tensor:
        out = session.run(None, {"input": x.numpy()})[0]
        return torch.from_numpy(out).contiguous(memory_format=torch.channels_last)

    return FrozenPrefix(count, size, run)


def batch_norm_momentum(steps: int, pretrained: float = 0.01) -> float:
    """The momentum at which the trained blocks' batch-norm statistics (which validation and every later use of
    the network rely on) follow the new images: ``pretrained`` (the weights' own; TensorFlow's 0.99 decay for the
    EfficientNet-Lite ones), or more where that would leave over ``PRETRAINED_STATISTICS_LEFT`` of ImageNet's
    statistics after the run's ``steps``. On the demo's 1,060 steps it stays 0.01. On 3 epochs of 343 digit
    images (33 steps), 0.01 left 72% of ImageNet's statistics, and the network did far worse in use than in
    training (4% training error, 33% validation error, 64.7% on the test images); there it is 0.13, which gave 0%
    validation error and 97.8%."""
    return max(pretrained, 1 - PRETRAINED_STATISTICS_LEFT ** (1 / max(steps, 1)))


def follow_batch_statistics(model: Classifier, steps: int) -> None:
    """Set every batch norm's momentum to ``batch_norm_momentum(steps, its own)`` (one without a momentum keeps a
    plain average). Frozen blocks stay in eval mode, so their statistics do not move whatever it is."""
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm) and module.momentum is not None:
            module.momentum = batch_norm_momentum(steps, module.momentum)


def make_sampler(labels: np.ndarray, balance: bool, max_images: int | None, generator: torch.Generator):
    n = len(labels) if max_images is None else min(max_images, len(labels))
    if balance:
        counts = np.bincount(labels)
        weights = 1.0 / counts[labels]
        return WeightedRandomSampler(torch.as_tensor(weights, dtype=torch.double), n, replacement=True, generator=generator)
    return RandomSampler(range(len(labels)), num_samples=n if max_images is not None else None, generator=generator)


def evaluate(model: Classifier, loader: DataLoader, device: torch.device, amp: bool) -> tuple[float, float]:
    """(error, mean cross-entropy loss) of ``model`` on ``loader``'s images (under torchrun, on every process's
    share of them together); (nan, nan) without any."""
    model.eval()
    wrong = total = 0
    loss_sum = 0.0
    with torch.inference_mode(), torch.autocast(device.type, enabled=amp):
        for batch in loader:
            if batch is None:
                continue
            x, y = batch
            logits = model(x.to(device, non_blocking=True)).float().cpu()
            wrong += int((logits.argmax(1) != y).sum())
            loss_sum += float(torch.nn.functional.cross_entropy(logits, y, reduction="sum"))
            total += len(y)
    wrong, loss_sum, total = distributed.all_sum(wrong, loss_sum, total)
    return (wrong / total, loss_sum / total) if total else (float("nan"), float("nan"))


def is_better(record: dict, best: dict | None) -> bool:
    """Whether an epoch beats the best so far by validation: a lower error, or the same error at a lower loss."""
    if best is None:
        return True
    return (record["val_error"], record["val_loss"]) < (best["val_error"], best["val_loss"])


def refine(model: Classifier, train_items: list[tuple[Path, int]], val_items: list[tuple[Path, int]],
           config: RefineConfig, checkpoint_path: Path | None = None, config_key: str = "",
           on_epoch: Callable[[dict], None] | None = None, progress: bool = True) -> tuple[list[dict], int]:
    """Train ``model`` in place on ``train_items``, watching ``val_items`` (images it does not train on; never the
    test set). Returns the per-epoch history (train error and loss, validation error and loss, learning rate,
    seconds) and the epoch whose weights ``model`` holds at the end: the best by validation, or the last without
    validation images.

    After each epoch a checkpoint is written atomically; a later call with the same ``config_key`` resumes from it.
    """
    device = distributed.start(resolve_device(config.device))
    torch.manual_seed(config.seed + distributed.rank())  # augmentation differs between processes
    main = distributed.is_main()
    progress = progress and main
    amp = device.type == "cuda"
    workers = default_workers(config.num_workers)
    size = config.input_size  # of validation (the training crops: config.train_resolution)
    load_size = train_load_size(config.train_resolution)
    train_set = ImageListDataset(train_items, partial(resize_square, size=load_size),
                                 train_transform(config.train_resolution, config.augmentation), load_size)
    val_set = ImageListDataset(val_items, partial(eval_preprocess, size=size), _as_is, size)
    if config.cache_images and (len(train_items) * load_size ** 2 + len(val_items) * size ** 2) * 3 <= CACHE_BUDGET_BYTES:
        train_set.fill_cache(workers, "decoding training images", progress)
        val_set.fill_cache(workers, "decoding validation images", progress)
    generator = torch.Generator().manual_seed(config.seed)
    sampler = distributed.ShardedSampler(make_sampler(np.array([label for _, label in train_items]),
                                                      config.balance_classes, config.max_train_images, generator))
    loader_args = dict(num_workers=workers, collate_fn=collate, pin_memory=device.type == "cuda",
                       persistent_workers=workers > 0)
    train_loader = DataLoader(train_set, batch_size=config.batch_size, sampler=sampler, drop_last=False, **loader_args)
    val_share = range(distributed.rank(), len(val_items), distributed.world_size())  # each process scores its share
    val_loader = (DataLoader(val_set, batch_size=config.batch_size * 2, sampler=val_share, **loader_args)
                  if val_items else None)

    frozen = freeze_early_blocks(model, config.train_blocks)
    follow_batch_statistics(model, len(train_loader) * config.epochs)
    model.to(device)
    if device.type == "cpu":
        model.to(memory_format=torch.channels_last)
        if config.frozen_in_onnxruntime:
            model.prefix = run_frozen_blocks_in_onnxruntime(model, config.train_blocks, config.train_resolution)
    try:
        net = model  # what the batches go through: under torchrun, the model wrapped to average gradients across processes
        if distributed.is_distributed():
            net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        trainable = [p for p in model.parameters() if p.requires_grad]
        optimizer = make_optimizer(config, trainable)
        scaler = torch.amp.GradScaler(device.type, enabled=amp)
        loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)

        history, start, best, best_state = [], 0, None, None
        if checkpoint_path and Path(checkpoint_path).is_file():
            state = torch.load(checkpoint_path, map_location=device, weights_only=True)
            if state.get("config_key") == config_key:
                model.load_state_dict(state["model"])
                optimizer.load_state_dict(state["optimizer"])
                scaler.load_state_dict(state["scaler"])
                generator.set_state(state["generator"])
                torch.set_rng_state(state["torch_rng"])
                history, start = state["history"], state["epoch"]
                best_state = state.get("best_model")
                best = next((h for h in history if h["epoch"] == state.get("best_epoch")), None)
                print(f"resuming refinement after epoch {start} of {config.epochs} from {checkpoint_path}")
                if state.get("world_size", 1) != distributed.world_size():
                    print(f"warning: this refinement began in {state.get('world_size', 1)} process(es) and goes on in "
                          f"{distributed.world_size()}: the images per step change from here on (rf_mbSize is per process)")

        steps = max(len(train_loader), 1)
        for epoch in range(start, config.epochs):
            began = time.perf_counter()
            model.train()
            for module in frozen:
                module.eval()  # the pretrained batch-norm statistics of frozen blocks stay as they are
            wrong = seen = 0
            loss_sum = 0.0
            bar = tqdm(train_loader, desc=f"epoch {epoch + 1}/{config.epochs}", unit="batch", disable=not progress, leave=False)
            lr = scheduled_rate(config, epoch)
            for step, batch in enumerate(bar):
                lr = scheduled_rate(config, epoch + step / steps)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                if batch is None:
                    continue
                x, y = batch
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                with torch.autocast(device.type, enabled=amp):
                    logits = net(x)
                    loss = loss_fn(logits, y)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                wrong += int((logits.argmax(1) != y).sum())
                seen += len(y)
                loss_sum += float(loss.detach()) * len(y)
                bar.set_postfix(loss=f"{loss_sum / seen:.3f}", lr=f"{lr:.2g}")
            wrong, seen, loss_sum = distributed.all_sum(wrong, seen, loss_sum)  # of every process's images
            record = {"epoch": epoch + 1, "lr": lr, "train_loss": loss_sum / max(seen, 1),
                      "train_error": wrong / max(seen, 1)}
            if val_loader is not None:
                record["val_error"], record["val_loss"] = evaluate(model, val_loader, device, amp)
            record["seconds"] = time.perf_counter() - began
            history.append(record)
            note = ""
            if val_loader is not None and is_better(record, best):
                best = record
                best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
                note = "  <- best so far"
            print(f"epoch {record['epoch']:>3}/{config.epochs}: train loss {record['train_loss']:.4f}, "
                  f"train error {record['train_error']:.2%}"
                  + (f", validation error {record['val_error']:.2%}, loss {record['val_loss']:.4f}" if val_loader else "")
                  + f" ({eta(history, config.epochs)}){note}", flush=True)
            if checkpoint_path and main:
                save_torch(checkpoint_path, {"config_key": config_key, "epoch": epoch + 1, "history": history,
                                             "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                             "scaler": scaler.state_dict(), "generator": generator.get_state(),
                                             "torch_rng": torch.get_rng_state(), "best_model": best_state,
                                             "best_epoch": best["epoch"] if best else None,
                                             "world_size": distributed.world_size()})
            if on_epoch and main:
                on_epoch(record)
    finally:  # even when training stops on an error or Ctrl-C, the model handed back is the whole torch network
        model.prefix = None  # from here on it runs in torch alone (and is saved and exported whole)
    distributed.stop()
    model.to("cpu", memory_format=torch.contiguous_format)
    kept = len(history)
    if best_state is not None:
        model.load_state_dict(best_state)
        kept = best["epoch"]
    model.eval()
    return history, kept


def eta(history: list[dict], epochs: int) -> str:
    """'<this epoch's time>, about <estimate> left', from the mean time of the epochs run so far."""
    took = [h["seconds"] for h in history if "seconds" in h]
    left = (epochs - len(history)) * (sum(took) / len(took)) if took else 0.0
    return f"{_minutes(took[-1] if took else 0.0)}" + (f", about {_minutes(left)} left" if len(history) < epochs else "")


def _minutes(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"
