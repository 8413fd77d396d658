"""Tasks: what a head outputs, its training loss, its metrics.

Dense tasks predict per pixel, (B, C, H, W); image-level tasks predict one
value per image, (B, C). A task knows nothing of architectures or weighting
methods; the training loop asks it for a loss and a fresh metric state, and
architectures ask `dense` which kind of head to build
(`runners.models.heads.make_head`).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from runners.metrics import (
    ClassificationState,
    DepthState,
    Metric,
    MetricState,
    NormalState,
    RegressionState,
    SegmentationState,
)


@dataclass(frozen=True)
class Task(abc.ABC):
    """One task of a benchmark; `name` is the key of its target in a batch."""

    name: str
    state_type: ClassVar[type[MetricState]]
    # Per-pixel predictions (B, C, H, W) at the input's resolution; else one per image (B, C).
    dense: ClassVar[bool] = True

    @property
    @abc.abstractmethod
    def out_channels(self) -> int: ...

    @abc.abstractmethod
    def loss(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Scalar training loss of one batch."""

    def new_state(self) -> MetricState:
        return self.state_type()

    @property
    def metrics(self) -> tuple[Metric, ...]:
        return self.state_type.metrics

    @property
    def headline(self) -> Metric:
        return self.metrics[0]


@dataclass(frozen=True)
class Segmentation(Task):
    """Per-pixel classification; cross-entropy, labels outside [0, C) ignored."""

    num_classes: int = 0
    ignore_index: int = 255
    state_type: ClassVar[type[MetricState]] = SegmentationState

    @property
    def out_channels(self) -> int:
        return self.num_classes

    def loss(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(prediction, target, ignore_index=self.ignore_index)

    def new_state(self) -> MetricState:
        return SegmentationState(self.num_classes)


@dataclass(frozen=True)
class Depth(Task):
    """Per-pixel depth; L1 over pixels with nonzero ground truth."""

    state_type: ClassVar[type[MetricState]] = DepthState

    @property
    def out_channels(self) -> int:
        return 1

    def loss(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        valid = (target != 0).to(prediction.dtype)
        # Mean over valid pixels; clamp so an all-invalid batch gives 0, not NaN.
        return ((prediction - target).abs() * valid).sum() / valid.sum().clamp(min=1.0)


@dataclass(frozen=True)
class Normal(Task):
    """Per-pixel surface normal; 1 - cosine similarity over pixels with a nonzero ground truth."""

    state_type: ClassVar[type[MetricState]] = NormalState

    @property
    def out_channels(self) -> int:
        return 3

    def loss(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        valid = (target.abs().sum(dim=1) != 0).to(prediction.dtype)
        cosine = (F.normalize(prediction, dim=1) * target).sum(dim=1)
        return ((1.0 - cosine) * valid).sum() / valid.sum().clamp(min=1.0)


@dataclass(frozen=True)
class Classification(Task):
    """Image-level classification into `num_classes` classes; cross-entropy on (B, C) logits."""

    num_classes: int = 0
    state_type: ClassVar[type[MetricState]] = ClassificationState
    dense: ClassVar[bool] = False

    def __post_init__(self) -> None:
        if self.num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {self.num_classes}")

    @property
    def out_channels(self) -> int:
        return self.num_classes

    def loss(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(prediction, target)

    def new_state(self) -> MetricState:
        return ClassificationState(self.num_classes)


@dataclass(frozen=True)
class Regression(Task):
    """Image-level scalar regression; L1 loss on a (B, 1) prediction against (B,) targets.

    L1 rather than smooth-L1: it optimises the headline metric (MAE) itself,
    and its gradient does not shrink with the error, which matters for
    targets whose whole range is within smooth-L1's quadratic zone (an area
    fraction of 0.01 to 0.2).
    """

    state_type: ClassVar[type[MetricState]] = RegressionState
    dense: ClassVar[bool] = False

    @property
    def out_channels(self) -> int:
        return 1

    def loss(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return (prediction.reshape(target.shape) - target).abs().mean()
