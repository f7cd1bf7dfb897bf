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
    """PARAMETERS.py's recipe, shortened: one epoch of batches of 4 at a fixed rate, in this process."""
    import PARAMETERS
    from libraries.settings import module_parameters

    settings = dict(epochs=1, lr_per_epoch=[0.01], batch_size=4, num_workers=0, device="cpu")
    return refine.RefineConfig.from_parameters(module_parameters(PARAMETERS)[0], SIZE, **{**settings, **kw})


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
    history, kept = refine.refine(model, data[2:-2], data[:2] + data[-2:], config(), checkpoint_path=tmp_path / "ck.pt",
                                  config_key="k", progress=False)
    assert len(history) == 1 and kept == 1
    assert {"train_error", "val_error", "val_loss", "lr", "train_loss"} <= set(history[0]) and "test_error" not in history[0]
    assert not torch.equal(before, model.head.weight)
    # a second call with more epochs resumes after epoch 1 instead of starting over
    model2 = build_classifier("efficientnet_lite0", 2, SIZE, dropout=0.2)
    history2, _ = refine.refine(model2, data[2:-2], data[:2] + data[-2:], config(epochs=2),
                                checkpoint_path=tmp_path / "ck.pt", config_key="k", progress=False)
    assert [h["epoch"] for h in history2] == [1, 2] and history2[0] == history[0]
    assert "resuming refinement after epoch 1" in capsys.readouterr().out


def test_the_best_epoch_by_validation_is_kept(tmp_path, monkeypatch):
    """With validation errors 50%, 25%, 50% (whatever the weights), the weights after epoch 2 are the ones kept."""
    make_dataset(tmp_path / "img", {"h": 4, "v": 4}, size=64)
    data = items(tmp_path / "img")
    scripted = iter([(0.5, 0.7), (0.25, 0.6), (0.5, 0.5)])
    snapshots = []

    def fake_evaluate(model, loader, device, amp):
        snapshots.append(model.head.weight.detach().clone())
        return next(scripted)

    monkeypatch.setattr(refine, "evaluate", fake_evaluate)
    model = build_classifier("efficientnet_lite0", 2, SIZE)
    history, kept = refine.refine(model, data, data[:2], config(epochs=3, lr_per_epoch=[0.05]), progress=False)
    assert kept == 2 and [h["val_error"] for h in history] == [0.5, 0.25, 0.5]
    torch.testing.assert_close(model.head.weight, snapshots[1])
    assert not torch.equal(model.head.weight, snapshots[2])
    # without validation images, the last epoch is kept
    _, kept = refine.refine(build_classifier("efficientnet_lite0", 2, SIZE), data, [], config(epochs=2), progress=False)
    assert kept == 2


def test_train_size_sets_the_crops_and_validation_stays_at_the_input_size(tmp_path):
    make_dataset(tmp_path / "img", {"h": 4, "v": 4}, size=80)
    data = items(tmp_path / "img")
    for requested, crops in ((None, SIZE), (48, 48), (80, 80)):
        seen = set()
        model = build_classifier("efficientnet_lite0", 2, SIZE)
        model.register_forward_pre_hook(lambda module, args: seen.add((module.training, args[0].shape[1:])))
        refine.refine(model, data[1:-1], [data[0], data[-1]], config(train_size=requested), progress=False)
        assert seen == {(True, (crops, crops, 3)), (False, (SIZE, SIZE, 3))}, requested


def test_validation_images_are_a_stable_share_of_each_class():
    from libraries.dataset import validation_subset

    rows = [[f"a/{i}.jpg", 0] for i in range(40)] + [[f"b/{i}.jpg", 1] for i in range(10)] + [["c/0.jpg", 2], ["c/1.jpg", 2]]
    fit, val = validation_subset(rows, ["a", "b", "c"], 0.15, seed=0)
    assert sorted(map(tuple, fit + val)) == sorted(map(tuple, rows)) and not {r[0] for r in fit} & {r[0] for r in val}
    assert [sum(r[1] == k for r in val) for k in range(3)] == [6, 2, 1]  # round(15%), at least one, never all
    grown, grown_val = validation_subset(rows + [[f"a/new{i}.jpg", 0] for i in range(5)], ["a", "b", "c"], 0.15, seed=0)
    assert {r[0] for r in val if r[1] != 0} == {r[0] for r in grown_val if r[1] != 0}  # other classes unchanged
    assert validation_subset(rows, ["a", "b", "c"], 0.0, seed=0) == (rows, [])


def test_frozen_backbone_does_not_change(tmp_path):
    make_dataset(tmp_path / "img", {"h": 4, "v": 4}, size=64)
    model = build_classifier("efficientnet_lite0", 2, SIZE)
    stem = model.backbone.net._conv_stem.weight.detach().clone()
    running = model.backbone.net._bn0.running_mean.clone()
    refine.refine(model, items(tmp_path / "img"), [], config(train_blocks=0), progress=False)  # (history, kept)
    assert torch.equal(stem, model.backbone.net._conv_stem.weight)
    assert torch.equal(running, model.backbone.net._bn0.running_mean)


def test_only_the_last_blocks_train_and_frozen_batch_norm_statistics_stay(tmp_path):
    make_dataset(tmp_path / "img", {"h": 4, "v": 4}, size=64)
    model = build_classifier("efficientnet_lite0", 2, SIZE)
    blocks = model.trunk_blocks()
    assert len(blocks) == 18  # stem, 16 MBConv blocks, last convolution
    before = {k: v.clone() for k, v in model.state_dict().items()}
    refine.refine(model, items(tmp_path / "img"), [], config(train_blocks=3, lr_per_epoch=[0.05]), progress=False)
    after = model.state_dict()
    names = {id(t): n for n, t in model.state_dict(keep_vars=True).items()}

    def changed(group):
        keys = [names[id(t)] for module in group for t in list(module.parameters()) + list(module.buffers())]
        return [k for k in keys if not torch.equal(before[k], after[k]) and not k.endswith("num_batches_tracked")]

    assert all(not changed(group) for group in blocks[:-3])  # weights and running statistics as pretrained
    assert all(changed(group) for group in blocks[-3:])
    assert not torch.equal(before["head.weight"], after["head.weight"])


def test_the_image_cache_gives_the_same_refined_network(tmp_path):
    make_dataset(tmp_path / "img", {"h": 4, "v": 4}, size=80)
    data = items(tmp_path / "img")
    weights = []
    for cache in (True, False):
        torch.manual_seed(0)
        model = build_classifier("efficientnet_lite0", 2, SIZE)
        history, _ = refine.refine(model, data[1:-1], [data[0], data[-1]], config(cache_images=cache), progress=False)
        weights.append((model.state_dict(), history[0]["val_loss"]))
    for name, tensor in weights[0][0].items():
        torch.testing.assert_close(tensor, weights[1][0][name], rtol=0, atol=0, msg=name)
    assert weights[0][1] == weights[1][1]


def test_the_default_schedule_warms_up_then_decays_to_zero():
    cfg = config(epochs=10, lr=0.02, lr_per_epoch=None)
    rates = [refine.scheduled_rate(cfg, e / 4) for e in range(41)]
    peak = rates.index(max(rates))
    assert peak == 4 and abs(rates[peak] - 0.02) < 1e-6  # the end of the first epoch
    assert all(a < b for a, b in zip(rates[:peak], rates[1:peak + 1]))  # rising
    assert all(a >= b for a, b in zip(rates[peak:], rates[peak + 1:])) and rates[-1] < 1e-9  # falling to zero
    assert refine.scheduled_rate(config(lr_per_epoch=[0.1, 0.01]), 5.5) == 0.01


def test_the_progress_line_estimates_the_time_left():
    history = [{"seconds": 60.0}, {"seconds": 70.0}]
    assert refine.eta(history, 5) == "1m10s, about 3m15s left"
    assert refine.eta(history, 2) == "1m10s"


def test_cuda_request_without_gpu_is_clear():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(BadParameter, match="rf_device='cuda' but torch sees no CUDA GPU"):
        refine.resolve_device("cuda")


def test_the_optimizer_is_chosen_by_name():
    params = [torch.nn.Parameter(torch.zeros(2))]
    adamw = refine.make_optimizer(config(optimizer="adamw", weight_decay=0.05), params)
    sgd = refine.make_optimizer(config(optimizer="sgd", momentum=0.9), params)
    assert isinstance(adamw, torch.optim.AdamW) and adamw.defaults["weight_decay"] == 0.05
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["momentum"] == 0.9
    with pytest.raises(BadParameter, match="rf_optimizer"):
        refine.make_optimizer(config(optimizer="lbfgs"), params)


def test_batch_norm_momentum_leaves_at_most_1_percent_of_imagenet_statistics():
    assert refine.batch_norm_momentum(1060) == 0.01  # ELPV's 20 epochs of 53 steps: the weights' own, unchanged
    assert refine.batch_norm_momentum(33) == pytest.approx(0.130, abs=1e-3)  # 3 epochs of 11 steps
    for steps in (1, 12, 33, 160):  # from 459 steps on, 0.01 leaves less than 1%
        assert (1 - refine.batch_norm_momentum(steps)) ** steps == pytest.approx(0.01)
    assert refine.batch_norm_momentum(5000, pretrained=0.1) == 0.1  # a ResNet's own


def test_batch_norm_statistics_follow_the_new_images_in_a_short_run(tmp_path):
    """In a run of 12 steps, the running statistics that validation and use rely on end near the new images'
    (0.20 of the distance left, the batches differing; at the weights' own momentum of 0.01: 0.89)."""
    make_dataset(tmp_path / "img", {"h": 8, "v": 8}, size=64)
    data = items(tmp_path / "img")
    model = build_classifier("efficientnet_lite0", 2, SIZE)
    bn = model.backbone.net._bn1  # the last convolution's batch norm: a trained block
    pretrained = bn.running_mean.clone()
    inputs = []
    hook = bn.register_forward_hook(lambda module, args, out: inputs.append(args[0].mean(dim=(0, 2, 3)).detach()))
    # a learning rate of 0 keeps the weights, so the batch norm's input is the same before and after
    refine.refine(model, data, [], config(epochs=3, lr_per_epoch=[0.0]), progress=False)  # 16 images, batches of 4
    target = torch.stack(inputs).mean(0)  # the mean of its input over the 12 training batches
    hook.remove()
    assert len(inputs) == 12
    moved = (bn.running_mean - target).norm() / (pretrained - target).norm()
    assert moved < 0.5, f"{moved:.2f} of the distance to the images' statistics is left"


def test_frozen_blocks_run_in_onnxruntime_give_torchs_features_and_gradients():
    torch.manual_seed(0)
    model = build_classifier("efficientnet_lite0", 2, SIZE)
    refine.freeze_early_blocks(model, 13)
    model.eval()
    prefix = refine.run_frozen_blocks_in_onnxruntime(model, 13, SIZE)
    assert prefix.blocks == 5  # the stem and 4 MBConv blocks of 18
    x = torch.randint(0, 256, (3, SIZE, SIZE, 3), dtype=torch.uint8)
    results = []
    for runner in (None, prefix):
        model.prefix = runner
        model.zero_grad()
        features = model.features(x)
        features.square().sum().backward()
        results.append((features.detach(), model.backbone.net._blocks[-1]._depthwise_conv.weight.grad.clone()))
    model.prefix = None
    (torch_features, torch_grad), (ort_features, ort_grad) = results
    assert not torch.equal(torch_features, ort_features)  # the prefix did run elsewhere (its rounding differs)
    torch.testing.assert_close(ort_features, torch_features, rtol=1e-3, atol=1e-4)
    torch.testing.assert_close(ort_grad, torch_grad, rtol=1e-3, atol=1e-3 * float(torch_grad.abs().max()))
    assert not prefix.takes(x[:, :32, :32])  # another size goes through torch
    assert refine.run_frozen_blocks_in_onnxruntime(model, None, SIZE) is None  # nothing frozen


def test_refinement_runs_the_frozen_blocks_in_onnxruntime_and_hands_back_a_whole_torch_network(tmp_path, monkeypatch):
    make_dataset(tmp_path / "img", {"h": 4, "v": 4}, size=80)
    data = items(tmp_path / "img")
    calls = []
    original = refine.FrozenPrefix.__call__
    monkeypatch.setattr(refine.FrozenPrefix, "__call__", lambda self, x: calls.append(len(x)) or original(self, x))
    weights = []
    for in_onnxruntime in (True, False):
        torch.manual_seed(0)
        model = build_classifier("efficientnet_lite0", 2, SIZE)
        history, _ = refine.refine(model, data[1:-1], [data[0], data[-1]],
                                   config(train_blocks=13, optimizer="sgd", frozen_in_onnxruntime=in_onnxruntime),
                                   progress=False)  # SGD: Adam's first steps are about the signs of the gradients
        assert model.prefix is None
        weights.append((model.state_dict(), history[0]["val_loss"]))
    assert calls == [4, 2, 2]  # the training batches of 4, 2 and then the 2 validation images; none without it
    for name, tensor in weights[0][0].items():  # the same to within onnxruntime's rounding
        scale = float(tensor.abs().max()) if tensor.is_floating_point() else 0
        torch.testing.assert_close(tensor, weights[1][0][name], rtol=1e-3, atol=1e-3 * scale, msg=name)
    assert weights[0][1] == pytest.approx(weights[1][1], rel=1e-3)


def test_refinement_stopped_midway_still_hands_back_a_whole_torch_network(tmp_path):
    make_dataset(tmp_path / "img", {"h": 4, "v": 4}, size=80)
    data = items(tmp_path / "img")
    model = build_classifier("efficientnet_lite0", 2, SIZE)
    prefixes = []

    def stop(record):  # as Ctrl-C or an error after the first epoch would
        prefixes.append(model.prefix)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        refine.refine(model, data[1:-1], [data[0], data[-1]], config(epochs=2, train_blocks=13, frozen_in_onnxruntime=True),
                      progress=False, on_epoch=stop)
    assert isinstance(prefixes[0], refine.FrozenPrefix)  # the frozen blocks did run in onnxruntime
    assert model.prefix is None
