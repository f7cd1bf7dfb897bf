import numpy as np
import pytest
import torch

from libraries import refine
from libraries.backbones import build_classifier
from libraries.errors import BadParameter

from conftest import make_dataset

SIZE = 64


def items(root):
    labels = sorted(p.name for p in root.iterdir())
    return [(p, labels.index(p.parent.name)) for p in sorted(root.rglob("*.jpg"))]


def config(**kw):
    settings = dict(input_size=SIZE, epochs=1, lr_per_epoch=[0.01], batch_size=4,
                    num_workers=0, device="cpu")
    return refine.RefineConfig(**{**settings, **kw})


def test_learning_rate_schedule_last_value_repeats():
    schedule = [0.01] * 2 + [0.001]
    assert [refine.learning_rate(schedule, e) for e in range(5)] == [0.01, 0.01, 0.001, 0.001, 0.001]


def test_balanced_sampler_sees_classes_equally():
    labels = np.array([0] * 90 + [1] * 10)
    sampler = refine.make_sampler(labels, balance=True, max_images=None, generator=torch.Generator().manual_seed(0))
    drawn = labels[list(sampler)]
    assert len(drawn) == 100 and 0.35 < drawn.mean() < 0.65
    capped = refine.make_sampler(labels, balance=False, max_images=7, generator=torch.Generator().manual_seed(0))
    assert len(list(capped)) == 7


def test_refine_trains_checkpoints_and_resumes(tmp_path, capsys):
    make_dataset(tmp_path / "img", {"h": 6, "v": 6}, size=64)
    data = items(tmp_path / "img")
    model = build_classifier("efficientnet_lite0", 2, SIZE, dropout=0.2)
    before = model.head.weight.detach().clone()
    history = refine.refine(model, data, data[:4], config(), checkpoint_path=tmp_path / "ck.pt", config_key="k", progress=False)
    assert len(history) == 1 and {"train_error", "test_error", "lr", "train_loss"} <= set(history[0])
    assert not torch.equal(before, model.head.weight)
    # a second call with more epochs resumes after epoch 1 instead of starting over
    model2 = build_classifier("efficientnet_lite0", 2, SIZE, dropout=0.2)
    history2 = refine.refine(model2, data, data[:4], config(epochs=2), checkpoint_path=tmp_path / "ck.pt", config_key="k", progress=False)
    assert [h["epoch"] for h in history2] == [1, 2] and history2[0] == history[0]
    assert "resuming refinement after epoch 1" in capsys.readouterr().out


def test_frozen_backbone_does_not_change(tmp_path):
    make_dataset(tmp_path / "img", {"h": 4, "v": 4}, size=64)
    model = build_classifier("efficientnet_lite0", 2, SIZE)
    stem = model.backbone.net._conv_stem.weight.detach().clone()
    running = model.backbone.net._bn0.running_mean.clone()
    refine.refine(model, items(tmp_path / "img"), [], config(freeze_backbone=True), progress=False)
    assert torch.equal(stem, model.backbone.net._conv_stem.weight)
    assert torch.equal(running, model.backbone.net._bn0.running_mean)


def test_cuda_request_without_gpu_is_clear():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(BadParameter, match="rf_device='cuda' but torch sees no CUDA GPU"):
        refine.resolve_device("cuda")
