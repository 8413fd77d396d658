"""The interface every architecture implements, and the registries."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import torch
from torch import nn

from runners.registry import Registry
from runners.tasks import Task


class Encoder(nn.Module):
    """A backbone: image (B, 3, H, W) -> features (B, out_channels, H/stride, W/stride)."""

    out_channels: int
    stride: int


class MultiTaskModel(nn.Module):
    """Maps an image to one prediction per task.

    `forward` returns the shared representation (the output of the shared
    encoder, or None when the architecture has none) and the predictions.
    Gradient methods use the representation to take each task's gradient
    cheaply (see `runners.weighting.base`).
    """

    # Architectures whose tasks share no parameters give the single-task baseline.
    single_task: ClassVar[bool] = False
    # Weighting methods this architecture can be trained with; None = all.
    allowed_weightings: ClassVar[frozenset[str] | None] = None

    def __init__(self, tasks: tuple[Task, ...], backbone: str) -> None:
        super().__init__()
        self.tasks = tasks
        self.backbone = backbone

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor | None, dict[str, torch.Tensor]]:
        raise NotImplementedError

    def shared_parameters(self) -> list[nn.Parameter]:
        """Parameters that more than one task's loss depends on."""
        raise NotImplementedError

    def task_parameters(self, task: str) -> list[nn.Parameter]:
        """Parameters that only `task`'s loss depends on."""
        raise NotImplementedError


BackboneFactory = Callable[[], Encoder]
BACKBONES: Registry[BackboneFactory] = Registry("backbone", parametrised=False)
ARCHITECTURES: Registry[type[MultiTaskModel]] = Registry("architecture")
