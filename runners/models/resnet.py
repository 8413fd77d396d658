"""Dilated ResNet-18 and ResNet-50: output stride 8, for the real dense-prediction protocols.

Written here (torchvision is not a dependency) with torchvision's module
names, so that its ImageNet state dicts load (`load_pretrained`).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import ClassVar

import torch
from torch import nn

from runners.models.backbones import WidthMultiplier
from runners.models.base import BACKBONES, Encoder, scaled


def conv3x3(c_in: int, c_out: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)


class BasicBlock(nn.Module):
    expansion: ClassVar[int] = 1

    def __init__(
        self,
        c_in: int,
        planes: int,
        stride: int,
        first_dilation: int,
        dilation: int,
        downsample: nn.Module | None,
    ) -> None:
        super().__init__()
        self.conv1 = conv3x3(c_in, planes, stride, first_dilation)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes, dilation=dilation)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        result: torch.Tensor = self.relu(out + identity)
        return result


class Bottleneck(nn.Module):
    """The ResNet v1.5 bottleneck: the stride is on the 3x3 convolution, as in torchvision."""

    expansion: ClassVar[int] = 4

    def __init__(
        self,
        c_in: int,
        planes: int,
        stride: int,
        first_dilation: int,
        dilation: int,
        downsample: nn.Module | None,
    ) -> None:
        super().__init__()
        del dilation  # a bottleneck has one 3x3 convolution: it takes `first_dilation`
        self.conv1 = nn.Conv2d(c_in, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride, first_dilation)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        result: torch.Tensor = self.relu(out + identity)
        return result


class DilatedResNet(Encoder):
    """ResNet (He et al., CVPR 2016) dilated as in Yu et al. (CVPR 2017) for dense prediction.

    The strides of layer3 and layer4 become dilations 2 and 4 (the first
    3x3 convolution of each of these layers keeps the previous dilation), so
    the output stride is 8 rather than 32: the dilated ResNet that MTAN,
    LibMTL and the multi-task survey of Vandenhende et al. use on NYUv2 and
    Cityscapes.  Four stages: stem + layer1 (stride 4), layer2 (8), layer3
    (8), layer4 (8).  Channels times `width_multiplier`; ImageNet weights exist
    only at 1.
    """

    num_stages: ClassVar[int] = 4
    block: ClassVar[type[BasicBlock] | type[Bottleneck]]
    layers: ClassVar[tuple[int, int, int, int]]

    def __init__(self, *, width_multiplier: WidthMultiplier = 1.0) -> None:
        super().__init__()
        self.width_multiplier = width_multiplier
        self.c_in = scaled(64, width_multiplier)
        stem = [
            ("conv1", nn.Conv2d(3, self.c_in, 7, stride=2, padding=3, bias=False)),
            ("bn1", nn.BatchNorm2d(self.c_in)),
            ("relu", nn.ReLU(inplace=True)),
            ("maxpool", nn.MaxPool2d(3, stride=2, padding=1)),
        ]
        planes = [scaled(c, width_multiplier) for c in (64, 128, 256, 512)]
        layer1 = self.make_layer(planes[0], self.layers[0], stride=1, dilation=1, previous=1)
        self.stages = nn.ModuleList(
            [
                nn.Sequential(OrderedDict([*stem, ("layer1", layer1)])),
                self.make_layer(planes[1], self.layers[1], stride=2, dilation=1, previous=1),
                self.make_layer(planes[2], self.layers[2], stride=1, dilation=2, previous=1),
                self.make_layer(planes[3], self.layers[3], stride=1, dilation=4, previous=2),
            ]
        )
        self.stage_channels = tuple(p * self.block.expansion for p in planes)
        self.stage_strides = (4, 8, 8, 8)
        for m in self.modules():  # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def make_layer(
        self, planes: int, blocks: int, *, stride: int, dilation: int, previous: int
    ) -> nn.Sequential:
        c_out = planes * self.block.expansion
        downsample = None
        if stride != 1 or self.c_in != c_out:
            downsample = nn.Sequential(
                nn.Conv2d(self.c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
            )
        layer = [self.block(self.c_in, planes, stride, previous, dilation, downsample)]
        self.c_in = c_out
        layer += [self.block(c_out, planes, 1, dilation, dilation, None) for _ in range(1, blocks)]
        return nn.Sequential(*layer)

    def load_pretrained(self, state: Mapping[str, torch.Tensor]) -> None:
        """Load a torchvision ResNet state dict (its `fc` is dropped) or one of this class."""
        ours = {}
        for key, value in state.items():
            if key.startswith("fc."):
                continue
            ours[self.our_key(key)] = value
        mine = self.state_dict()
        mismatched = [k for k in ours if k in mine and ours[k].shape != mine[k].shape]
        missing = sorted(set(mine) - set(ours))
        unexpected = sorted(set(ours) - set(mine))
        if mismatched or missing or unexpected:
            raise ValueError(
                f"the weights file does not fit {type(self).__name__} at width_multiplier"
                f" {self.width_multiplier} (ImageNet weights fit only width_multiplier 1.0):"
                f" {len(mismatched)} tensors of another shape (e.g. {mismatched[:2]}),"
                f" {len(missing)} missing (e.g. {missing[:2]}),"
                f" {len(unexpected)} unexpected (e.g. {unexpected[:2]})"
            )
        self.load_state_dict(ours)

    @staticmethod
    def our_key(key: str) -> str:
        """torchvision's name of a tensor -> ours: conv1.weight -> stages.0.conv1.weight, ..."""
        if key.startswith("stages."):
            return key
        head, _, rest = key.partition(".")
        if head in ("conv1", "bn1", "layer1"):
            return f"stages.0.{key}"
        if head in ("layer2", "layer3", "layer4"):
            return f"stages.{int(head[-1]) - 1}.{rest}"
        return key

    @staticmethod
    def torchvision_key(key: str) -> str:
        """Ours -> torchvision's (the inverse of `our_key`)."""
        _, index, rest = key.split(".", 2)
        return rest if index == "0" else f"layer{int(index) + 1}.{rest}"


@BACKBONES.register("resnet18-dilated")
class ResNet18Dilated(DilatedResNet):
    """Dilated ResNet-18: basic blocks, 512 channels out at stride 8 (see DilatedResNet)."""

    block = BasicBlock
    layers = (2, 2, 2, 2)
    weights_file = "resnet18.pth"


@BACKBONES.register("resnet50-dilated")
class ResNet50Dilated(DilatedResNet):
    """Dilated ResNet-50: bottleneck blocks, 2048 channels out at stride 8 (see DilatedResNet)."""

    block = Bottleneck
    layers = (3, 4, 6, 3)
    weights_file = "resnet50.pth"
