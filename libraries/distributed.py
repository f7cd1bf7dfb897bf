"""Refinement on several processes, GPUs or machines: torch DistributedDataParallel under ``torchrun``.

``torchrun --nproc_per_node=N scripts/2_refineDNN.py ...`` starts N copies of the script; torchrun's environment
(RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, ...) tells each which one it is. Without torchrun there is one
process and nothing here changes anything. The pieces:

- ``start``: joins the process group (NCCL on GPUs, gloo on the CPU) and picks this process's GPU;
- ``ShardedSampler``: every process draws the same epoch of indices from the same seeded sampler (so class
  balancing works as on one process) and takes every N-th of them, its own shard;
- ``all_sum``: adds up counts across processes (training and validation errors are of all images, not one shard);
- ``is_main``: process 0 alone prints, plots, logs to MLflow and writes checkpoints and the model.

Each process trains on ``rf_mbSize`` images per step, so a step sees N times as many in all.
"""
from __future__ import annotations

import math
import os
import sys

import torch
import torch.distributed as dist
from torch.utils.data import Sampler

from .settings import first_process, process_rank


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


rank = process_rank  # which process this is (settings owns reading torchrun's RANK)
is_main = first_process


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def start(device: torch.device) -> torch.device:
    """Join torchrun's process group when there is one (NCCL on CUDA, gloo on the CPU); return this process's
    device (its own GPU: ``LOCAL_RANK``). A process other than the first is silenced on stdout: one console."""
    if world_size() <= 1:
        return device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not is_distributed():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        if not is_main():
            sys.stdout = open(os.devnull, "w")
    return device


def stop() -> None:
    if is_distributed():
        dist.destroy_process_group()


def all_sum(*values: float) -> list[float]:
    """The sums of ``values`` over all processes (the values themselves on one process)."""
    if not is_distributed():
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(tensor)
    return tensor.tolist()


class ShardedSampler(Sampler):
    """This process's share of ``sampler``'s indices: every process draws the same sequence (the sampler's generator
    is seeded alike everywhere), pads it by repeating its start to a multiple of the world size, and takes every
    ``world``-th index from its ``rank``. One process gets the sampler's indices as they are."""

    def __init__(self, sampler: Sampler, world: int | None = None, rank_: int | None = None):
        self.sampler = sampler
        self.world = world_size() if world is None else world
        self.rank = rank() if rank_ is None else rank_

    def __len__(self) -> int:
        return math.ceil(len(self.sampler) / self.world)

    def __iter__(self):
        indices = list(self.sampler)
        if self.world > 1:
            indices += indices[:len(self) * self.world - len(indices)]
        return iter(indices[self.rank::self.world])
