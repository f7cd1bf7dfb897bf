"""Refinement under torchrun: 2 processes with gloo on the CPU, on generated images. One model is written, a killed run
resumes, and the refined network does as well on the validation images as one process does."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from libraries.distributed import ShardedSampler
from libraries.refine import make_sampler

from conftest import REPO, make_dataset, run_script


def test_shards_split_each_epoch_between_processes_and_keep_the_class_balance():
    labels = np.array([0] * 90 + [1] * 10)
    draws = {}
    for rank in (0, 1):  # each process draws from the same seeded sampler, as under torchrun
        sampler = make_sampler(labels, balance=True, max_images=None, generator=torch.Generator().manual_seed(3))
        draws[rank] = [list(ShardedSampler(sampler, world=2, rank_=rank)) for _ in range(2)]  # two epochs
    for epoch in range(2):
        first, second = draws[0][epoch], draws[1][epoch]
        assert len(first) == len(second) == 50
        whole = make_sampler(labels, balance=True, max_images=None, generator=torch.Generator().manual_seed(3))
        expected = [list(whole) for _ in range(2)][epoch]
        assert sorted(first + second) == sorted(expected)  # the two shards are the one-process epoch, split
    both = np.array(draws[0][0] + draws[1][0])
    assert 0.35 < (labels[both] == 1).mean() < 0.65  # the 10% class is drawn about half the time, as on one process
    assert draws[0][0] != draws[0][1]  # a new order every epoch
    plain = list(ShardedSampler(range(7), world=1, rank_=0))
    assert plain == list(range(7))


def torchrun(*args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
            str(REPO / "scripts" / "2_refineDNN.py"), *[a for s in args for a in ("--set", s)]]


@pytest.mark.slow
def test_torchrun_refines_resumes_and_matches_one_process(tmp_path):
    make_dataset(tmp_path / "images" / "toy", {"horizontal": 24, "vertical": 24}, size=64)
    sets = ["datasetName=toy", "rf_inputResolution=64", "classifier=dnn", "rf_numWorkers=0", "rf_augmentation=standard",
            "track_boMlflow=False", "rf_valFraction=0.25"]
    run_script("1_prepareData.py", tmp_path, *sets)
    env = {**os.environ, "DATA_DIR": str(tmp_path), "PYTHONUNBUFFERED": "1"}
    proc = tmp_path / "proc" / "toy"

    # a misspelt parameter: each process stops before any work, and only the first says why
    typo = subprocess.run(torchrun(*sets, "clasifier=dnn"), cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert typo.returncode != 0
    errors = [line for line in typo.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: --set 'clasifier=dnn': 'clasifier' is not a parameter of PARAMETERS.py. Did you mean 'classifier'?"]

    # one epoch: one model, written by the first process, logged once
    done = subprocess.run(torchrun(*sets, "rf_maxEpochs=1", "rf_mbSize=4"), cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "in 2 processes (torchrun; 4 images per process and step)" in done.stdout
    assert done.stdout.count("epoch   1/1:") == 1 and done.stdout.count("done in") == 1
    meta = json.loads((proc / "model.json").read_text())
    assert meta["world_size"] == 2 and [h["epoch"] for h in meta["history"]] == [1]
    assert sorted(p.name for p in proc.glob("model*")) == ["model.json", "model.pt"]

    # 5 epochs, stopped (SIGTERM to torchrun, which ends its workers, as Ctrl-C or a scheduler would) once the first
    # checkpoint is there, then run again: it resumes
    sets5 = [*sets, "rf_maxEpochs=5", "rf_mbSize=4"]  # 2 processes x 4 images per step
    (proc / "model.json").unlink()
    checkpoint = proc / "refine_checkpoint.pt"
    running = subprocess.Popen(torchrun(*sets5), cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not checkpoint.exists() and running.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    running.send_signal(signal.SIGTERM)
    running.wait(timeout=120)
    assert checkpoint.exists() and not (proc / "model.json").exists(), "stopped too late: the run had finished"
    resumed = subprocess.run(torchrun(*sets5), cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    assert "resuming refinement after epoch" in resumed.stdout and not checkpoint.exists()
    ddp = json.loads((proc / "model.json").read_text())
    assert [h["epoch"] for h in ddp["history"]] == [1, 2, 3, 4, 5] and ddp["world_size"] == 2

    # one process with the same images per step (8): the validation error of the kept epoch is comparable
    (proc / "model.json").unlink()
    run_script("2_refineDNN.py", tmp_path, *sets, "rf_maxEpochs=5", "rf_mbSize=8")
    single = json.loads((proc / "model.json").read_text())
    assert single["world_size"] == 1
    kept = lambda meta: meta["history"][meta["kept_epoch"] - 1]["val_error"]  # noqa: E731
    assert kept(ddp) <= 0.25 and kept(single) <= 0.25 and abs(kept(ddp) - kept(single)) <= 0.15, (kept(ddp), kept(single))
