"""Backbones: the shared feature extractors."""

from __future__ import annotations

import torch
from torch import nn

from runners.models.base import BACKBONES, Encoder


def conv_bn_relu(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class SmallCNN(Encoder):
    """Five 3x3 conv-BN-ReLU layers, two of them strided: 64x64 in, 16x16 x 2w out."""

    stride = 4

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self.out_channels = 2 * width
        self.layers = nn.Sequential(
            conv_bn_relu(3, width),
            conv_bn_relu(width, width, stride=2),
            conv_bn_relu(width, 2 * width),
            conv_bn_relu(2 * width, 2 * width, stride=2),
            conv_bn_relu(2 * width, 2 * width),
        )

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.layers(image)
        return out


@BACKBONES.register("small-cnn")
def small_cnn() -> Encoder:
    return SmallCNN()
