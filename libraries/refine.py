"""Fine-tuning a Classifier end to end (or only its head), with checkpoints that let a killed run resume.

It watches a validation set (training images held out from training; the test set is never seen before script 5)
and keeps the weights of the epoch that did best on it.

SGD with momentum and weight decay, one learning rate per epoch (the last repeating), dropout before the new
head, optional freezing of the pretrained layers and class-balanced sampling, train-time augmentation from
``presets``. CUDA with mixed precision when asked for, the CPU otherwise.
"""
from __future__ import annotations

import os
from functools import partial
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler, WeightedRandomSampler
from tqdm.auto import tqdm

from .artifacts import save_torch
from .backbones import Classifier
from .errors import BadParameter
from .images import ImageError, read_image
from .presets import eval_preprocess, train_transform


class ImageListDataset(Dataset):
    """(path, label id) pairs; an image that fails to decode yields None, which ``collate`` drops."""

    def __init__(self, items: list[tuple[Path, int]], transform: Callable, min_size: int):
        self.items, self.transform, self.min_size = items, transform, min_size

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        path, label = self.items[index]
        try:
            image = read_image(path, min_size=self.min_size)
        except ImageError:
            return None
        x = self.transform(image)
        return (torch.as_tensor(x), label)


def collate(batch):
    batch = [b for b in batch if b is not None]
    if not batch:
        return None
    return torch.stack([b[0] for b in batch]), torch.tensor([b[1] for b in batch])


@dataclass
class RefineConfig:
    input_size: int
    epochs: int = 45
    lr_per_epoch: list = field(default_factory=lambda: [0.01] * 20 + [0.001] * 20 + [0.0001])
    momentum: float = 0.9
    weight_decay: float = 0.0005
    batch_size: int = 16
    freeze_backbone: bool = False
    balance_classes: bool = False
    augmentation: str = "standard"
    max_train_images: int | None = None
    device: str = "auto"
    num_workers: int | None = None
    seed: int = 0


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


def make_sampler(labels: np.ndarray, balance: bool, max_images: int | None, generator: torch.Generator):
    n = len(labels) if max_images is None else min(max_images, len(labels))
    if balance:
        counts = np.bincount(labels)
        weights = 1.0 / counts[labels]
        return WeightedRandomSampler(torch.as_tensor(weights, dtype=torch.double), n, replacement=True, generator=generator)
    return RandomSampler(range(len(labels)), num_samples=n if max_images is not None else None, generator=generator)


def evaluate(model: Classifier, loader: DataLoader, device: torch.device, amp: bool) -> tuple[float, float]:
    """(error, mean cross-entropy loss) of ``model`` on ``loader``'s images; (nan, nan) without any."""
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
    test set). Returns the per-epoch history (train error and loss, validation error and loss, learning rate) and
    the epoch whose weights ``model`` holds at the end: the best by validation, or the last without validation images.

    After each epoch a checkpoint is written atomically; a later call with the same ``config_key`` resumes from it.
    """
    torch.manual_seed(config.seed)
    device = resolve_device(config.device)
    amp = device.type == "cuda"
    workers = config.num_workers if config.num_workers is not None else min(8, os.cpu_count() or 1)
    size = config.input_size
    train_set = ImageListDataset(train_items, train_transform(size, config.augmentation), size)
    val_set = ImageListDataset(val_items, partial(eval_preprocess, size=size), size)
    generator = torch.Generator().manual_seed(config.seed)
    sampler = make_sampler(np.array([label for _, label in train_items]), config.balance_classes,
                           config.max_train_images, generator)
    loader_args = dict(num_workers=workers, collate_fn=collate, pin_memory=device.type == "cuda",
                       persistent_workers=workers > 0)
    train_loader = DataLoader(train_set, batch_size=config.batch_size, sampler=sampler, drop_last=False, **loader_args)
    val_loader = DataLoader(val_set, batch_size=config.batch_size * 2, shuffle=False, **loader_args) if val_items else None

    if config.freeze_backbone:
        for p in model.backbone.parameters():
            p.requires_grad_(False)
    model.to(device)
    if device.type == "cpu":
        model.to(memory_format=torch.channels_last)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(trainable, lr=learning_rate(config.lr_per_epoch, 0), momentum=config.momentum,
                                weight_decay=config.weight_decay)
    scaler = torch.amp.GradScaler(device.type, enabled=amp)
    loss_fn = torch.nn.CrossEntropyLoss()

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

    for epoch in range(start, config.epochs):
        lr = learning_rate(config.lr_per_epoch, epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr
        model.train()
        if config.freeze_backbone:
            model.backbone.eval()  # keep the pretrained batch-norm statistics too
        wrong = seen = 0
        loss_sum = 0.0
        bar = tqdm(train_loader, desc=f"epoch {epoch + 1}/{config.epochs} (lr {lr:g})", unit="batch", disable=not progress, leave=False)
        for batch in bar:
            if batch is None:
                continue
            x, y = batch
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with torch.autocast(device.type, enabled=amp):
                logits = model(x)
                loss = loss_fn(logits, y)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            wrong += int((logits.argmax(1) != y).sum())
            seen += len(y)
            loss_sum += float(loss.detach()) * len(y)
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}")
        record = {"epoch": epoch + 1, "lr": lr, "train_loss": loss_sum / max(seen, 1), "train_error": wrong / max(seen, 1)}
        if val_loader is not None:
            record["val_error"], record["val_loss"] = evaluate(model, val_loader, device, amp)
        history.append(record)
        note = ""
        if val_loader is not None and is_better(record, best):
            best = record
            best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
            note = "  <- best so far"
        print(f"epoch {record['epoch']:>3}/{config.epochs}: lr {lr:g}, train loss {record['train_loss']:.4f}, "
              f"train error {record['train_error']:.2%}"
              + (f", validation error {record['val_error']:.2%}, loss {record['val_loss']:.4f}{note}" if val_loader else ""))
        if checkpoint_path:
            save_torch(checkpoint_path, {"config_key": config_key, "epoch": epoch + 1, "history": history,
                                         "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                         "scaler": scaler.state_dict(), "generator": generator.get_state(),
                                         "torch_rng": torch.get_rng_state(), "best_model": best_state,
                                         "best_epoch": best["epoch"] if best else None})
        if on_epoch:
            on_epoch(record)
    model.to("cpu", memory_format=torch.contiguous_format)
    kept = len(history)
    if best_state is not None:
        model.load_state_dict(best_state)
        kept = best["epoch"]
    model.eval()
    return history, kept
