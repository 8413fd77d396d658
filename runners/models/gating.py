"""What the mixture-of-experts architectures share: gates and weighted sums of experts."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class SoftmaxGate(nn.Module):
    """Softmax weights over E experts, one set per image, from the experts' pooled features.

    g(x) = softmax(W pool([f_1(x), ..., f_E(x)]) + b): the gate of MMoE, CGC and
    PLE reads the input; here, as in `runners.models.mmoe`, the globally
    average-pooled features of the experts it mixes (an image's pixels are
    too many for a linear gate).
    """

    def __init__(self, channels: int, num_experts: int) -> None:
        super().__init__()
        self.linear = nn.Linear(num_experts * channels, num_experts)

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        return F.softmax(self.linear(pooled(features)), dim=1)


def pooled(features: Sequence[torch.Tensor]) -> torch.Tensor:
    """(B, sum of channels): each feature map's mean over its pixels, concatenated."""
    return torch.cat([f.mean(dim=(2, 3)) for f in features], dim=1)


def mixture(weights: torch.Tensor, features: Sequence[torch.Tensor]) -> torch.Tensor:
    """sum_i weights[:, i] * features[i], per image; sums of scaled tensors keep NHWC."""
    w = weights[:, :, None, None]
    mixed = w[:, 0:1] * features[0]
    for i in range(1, len(features)):
        mixed = mixed + w[:, i : i + 1] * features[i]
    return mixed
