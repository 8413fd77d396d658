"""SegNet: the encoder-decoder of MTAN's NYUv2 experiments."""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from runners.models.backbones import WidthMultiplier, conv_bn_relu
from runners.models.base import BACKBONES, Encoder, Memory, scaled

# Channels and 3x3 conv layers of the five encoder levels (mtan's segnet_mtan.py).
FILTERS = (64, 128, 256, 512, 512)
ENCODER_CONVS = (2, 2, 3, 3, 3)


def conv_stack(c_in: int, c_out: int, count: int) -> nn.Sequential:
    return nn.Sequential(
        conv_bn_relu(c_in, c_out), *(conv_bn_relu(c_out, c_out) for _ in range(count - 1))
    )


@BACKBONES.register("segnet")
class SegNet(Encoder):
    """SegNet (Badrinarayanan et al., TPAMI 2017), as MTAN's network (Liu et al., CVPR 2019).

    Ten stages.  Five encoder levels of VGG-like 3x3 conv-BN-ReLU layers
    (64-128-256-512-512 channels), each followed by 2x2 max-pooling that
    remembers where each maximum was; then five mirrored decoder levels, each
    after a max-unpooling with the indices of its encoder level, so that the
    decoder puts detail back where it came from.  Full-resolution features
    out (64 channels).  Channels times `width_multiplier`.
    """

    num_stages: ClassVar[int] = 10

    def __init__(self, *, width_multiplier: WidthMultiplier = 1.0) -> None:
        super().__init__()
        f = [scaled(c, width_multiplier) for c in FILTERS]
        encoder = [conv_stack(3 if i == 0 else f[i - 1], f[i], ENCODER_CONVS[i]) for i in range(5)]
        # Decoder level i (deepest first) maps f[i] to f[i - 1] channels at the resolution of
        # encoder level i, with as many layers as that encoder level.
        decoder = [conv_stack(f[i], f[max(i - 1, 0)], ENCODER_CONVS[i]) for i in reversed(range(5))]
        self.stages = nn.ModuleList([*encoder, *decoder])
        self.stage_channels = (*f, *(f[max(i - 1, 0)] for i in reversed(range(5))))
        self.stage_strides = (2, 4, 8, 16, 32, 16, 8, 4, 2, 1)

    def run_stage(self, index: int, x: torch.Tensor, memory: Memory) -> torch.Tensor:
        stage = self.stages[index]
        if index < 5:
            x = stage(x)
            pooled, indices = F.max_pool2d(x, 2, 2, return_indices=True)
            memory.append((indices, x.shape[-2:]))
            return pooled
        indices, size = memory[9 - index]
        out: torch.Tensor = stage(F.max_unpool2d(x, indices, (2, 2), (2, 2), output_size=size))
        return out
