"""Metrics of the dense and image-level tasks, as mergeable sufficient statistics.

Each task's evaluation keeps one `MetricState`. `update` adds the sufficient
statistics of one batch (sums and counts) to the state; `merge` adds another
state's statistics, so states filled on several batches, processes or Ray
workers combine into the state of the whole split; `compute` finishes the
metrics from the statistics alone.

Merging is exact: integer statistics (confusion matrix, pixel counts, angle
histogram) merge bit for bit; float64 sums merge up to the rounding of a
float64 addition, which depends on the order of the additions (about 1e-16
relative per addition), never on how the split was cut.

The statistics of one batch are computed by pure functions
(`segmentation_statistics`, `depth_statistics`, `normal_statistics`) and the
metrics from the statistics by pure functions (`finish_*`); the state classes
only add and store them.

Device: a state is created on the CPU and moves to the device of the first
tensors it is updated with; it stays there (later batches and merged states
are moved to it). `to_dict` and pickling always give CPU tensors, so a state
filled on a GPU can be shipped to a machine without one. `compute` returns
plain Python floats.

Empty splits: a metric with no valid pixel to average over is
``float("nan")`` (documented per state), never a silent 0. A non-finite
prediction on a valid pixel also makes the task's metrics non-finite (nan,
or inf for an infinite depth), so a diverged model cannot score well by
accident.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Self

import torch

__all__ = [
    "NORMAL_THRESHOLDS",
    "ClassificationState",
    "DepthState",
    "Metric",
    "MetricState",
    "NormalState",
    "RegressionState",
    "SegmentationState",
    "classification_statistics",
    "depth_statistics",
    "finish_classification",
    "finish_depth",
    "finish_normal",
    "finish_regression",
    "finish_segmentation",
    "normal_angles",
    "normal_statistics",
    "regression_statistics",
    "segmentation_statistics",
]

Statistics = dict[str, torch.Tensor]

NAN = float("nan")


@dataclass(frozen=True)
class Metric:
    """A metric's name (the key in results), its direction, and a one-line formula."""

    name: str
    higher_is_better: bool
    description: str


class MetricState(abc.ABC):
    """Sufficient statistics of one task over (part of) a split.

    Subclasses name their metrics in `metrics` (the first is the task's
    headline metric) and give two pure functions: the statistics of one batch
    and the metrics from the statistics.
    """

    metrics: ClassVar[tuple[Metric, ...]]

    def __init__(self) -> None:
        self._stats: Statistics = self._empty()
        self._device: torch.device | None = None

    # ----------------------------------------------------------- subclass hooks
    @abc.abstractmethod
    def config(self) -> dict[str, int]:
        """Constructor arguments; states merge only with equal config."""

    @abc.abstractmethod
    def _empty(self) -> Statistics:
        """Zero statistics, on the CPU."""

    @abc.abstractmethod
    def _batch(self, prediction: torch.Tensor, target: torch.Tensor) -> Statistics:
        """Statistics of one batch (pure)."""

    @abc.abstractmethod
    def _finish(self, stats: Statistics) -> dict[str, float]:
        """Metrics from statistics (pure)."""

    # ------------------------------------------------------------------ public
    @property
    def device(self) -> torch.device:
        """Where the statistics live: CPU until the first update or merge."""
        return self._device if self._device is not None else torch.device("cpu")

    def update(self, prediction: torch.Tensor, target: torch.Tensor) -> None:
        """Add the statistics of one batch; no gradient is recorded."""
        with torch.no_grad():
            batch = self._batch(prediction.detach(), target.detach())
        self._adopt(prediction.device)
        for key, value in batch.items():
            self._stats[key] += value.to(self.device)

    def merge(self, other: Self) -> None:
        """Add the statistics of `other` (left unchanged) to this state.

        ``a.merge(b)`` with `a` filled on one part of a split and `b` on the
        rest gives the state of one pass over the whole split; merging a state
        that saw no valid pixel changes nothing.
        """
        if type(other) is not type(self):
            raise TypeError(
                f"merge: other must be a {type(self).__name__}, got {type(other).__name__}"
            )
        if other.config() != self.config():
            raise ValueError(
                f"merge: other has config {other.config()}, this state has {self.config()}"
            )
        if other._device is not None:
            self._adopt(other._device)
        for key, value in other._stats.items():
            self._stats[key] += value.to(self.device)

    def compute(self) -> dict[str, float]:
        """Metrics over everything seen, keyed by `Metric.name`, in `metrics` order."""
        values = self._finish({k: v.cpu() for k, v in self._stats.items()})
        return {m.name: float(values[m.name]) for m in self.metrics}

    def statistics(self) -> Statistics:
        """A CPU copy of the sufficient statistics."""
        return {k: v.detach().cpu().clone() for k, v in self._stats.items()}

    def to_dict(self) -> dict[str, Any]:
        """``{"config": ..., "statistics": ...}`` with CPU tensors; see `from_dict`."""
        return {"config": self.config(), "statistics": self.statistics()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Rebuild a state (on the CPU) from `to_dict` output."""
        state = cls(**data["config"])
        stats = data["statistics"]
        if set(stats) != set(state._stats):
            raise ValueError(
                f"from_dict: statistics keys {sorted(stats)}, expected {sorted(state._stats)}"
            )
        for key, empty in state._stats.items():
            value = torch.as_tensor(stats[key])
            if value.shape != empty.shape or value.dtype != empty.dtype:
                raise ValueError(
                    f"from_dict: statistic {key!r} has shape {tuple(value.shape)} and dtype "
                    f"{value.dtype}, expected {tuple(empty.shape)} and {empty.dtype}"
                )
            state._stats[key] = value.detach().cpu().clone()
        return state

    def __getstate__(self) -> dict[str, Any]:
        return self.to_dict()

    def __setstate__(self, data: dict[str, Any]) -> None:
        self.__dict__.update(type(self).from_dict(data).__dict__)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"

    def _adopt(self, device: torch.device) -> None:
        if self._device is None:
            self._device = device
            self._stats = {k: v.to(device) for k, v in self._stats.items()}


def _check_positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


# ------------------------------------------------------------------ segmentation
def segmentation_statistics(
    prediction: torch.Tensor, target: torch.Tensor, num_classes: int
) -> Statistics:
    """Confusion matrix of one batch.

    `prediction`: logits (B, C, H, W), the predicted class is their argmax
    (the first maximum on ties); `target`: integer labels (B, H, W). Pixels
    whose label is outside [0, C) (e.g. 255 or -1) are ignored.

    Returns ``confusion`` (C x C, int64, row = target class, column =
    predicted class) and ``nonfinite`` (int64, ignored-label pixels excluded:
    pixels with a non-finite logit).
    """
    c = num_classes
    if prediction.ndim != 4 or prediction.shape[1] != c:
        raise ValueError(
            f"prediction must be logits of shape (B, {c}, H, W), got {tuple(prediction.shape)}"
        )
    if target.shape != prediction.shape[:1] + prediction.shape[2:]:
        raise ValueError(
            f"target must have shape {tuple(prediction.shape[:1] + prediction.shape[2:])} "
            f"(B, H, W), got {tuple(target.shape)}"
        )
    if target.dtype.is_floating_point or target.dtype.is_complex or target.dtype == torch.bool:
        raise ValueError(f"target must hold integer labels, got dtype {target.dtype}")
    labels = target.to(torch.int64)
    valid = (labels >= 0) & (labels < c)
    predicted = prediction.argmax(dim=1)
    index = labels[valid] * c + predicted[valid]
    confusion = torch.bincount(index, minlength=c * c).reshape(c, c)
    nonfinite = (~torch.isfinite(prediction).all(dim=1) & valid).sum()
    return {"confusion": confusion, "nonfinite": nonfinite.to(torch.int64)}


def finish_segmentation(stats: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """mIoU and pixel accuracy from a confusion matrix ``M`` (row = target).

    With ``TP_c = M[c, c]``, ``FP_c = sum_r M[r, c] - TP_c``,
    ``FN_c = sum_k M[c, k] - TP_c``::

        miou      = mean over {c : TP_c + FP_c + FN_c > 0} of TP_c / (TP_c + FP_c + FN_c)
        pixel_acc = trace(M) / sum(M)

    A class absent from both target and prediction is left out of the mean
    (a class only predicted counts, with IoU 0). Both are nan when no pixel
    was counted or when a counted pixel had a non-finite logit.

    >>> m = torch.tensor([[1, 0, 0], [0, 1, 1], [0, 0, 1]])
    >>> finish_segmentation({"confusion": m, "nonfinite": torch.tensor(0)})
    {'miou': 0.6666666666666666, 'pixel_acc': 0.75}
    """
    m = stats["confusion"].to(torch.float64)
    total = float(m.sum())
    if total == 0 or int(stats["nonfinite"]) > 0:
        return {"miou": NAN, "pixel_acc": NAN}
    tp = m.diagonal()
    union = m.sum(dim=0) + m.sum(dim=1) - tp
    present = union > 0
    miou = float((tp[present] / union[present]).mean())
    return {"miou": miou, "pixel_acc": float(tp.sum()) / total}


class SegmentationState(MetricState):
    """Segmentation over a split: one int64 confusion matrix (see `finish_segmentation`)."""

    metrics: ClassVar[tuple[Metric, ...]] = (
        Metric(
            "miou",
            True,
            "mean over classes present in target or prediction of TP / (TP + FP + FN)",
        ),
        Metric("pixel_acc", True, "correctly classified pixels / pixels with a label in [0, C)"),
    )

    def __init__(self, num_classes: int) -> None:
        self.num_classes = _check_positive_int("num_classes", num_classes)
        super().__init__()

    def config(self) -> dict[str, int]:
        return {"num_classes": self.num_classes}

    def _empty(self) -> Statistics:
        c = self.num_classes
        return {
            "confusion": torch.zeros(c, c, dtype=torch.int64),
            "nonfinite": torch.zeros((), dtype=torch.int64),
        }

    def _batch(self, prediction: torch.Tensor, target: torch.Tensor) -> Statistics:
        return segmentation_statistics(prediction, target, self.num_classes)

    def _finish(self, stats: Statistics) -> dict[str, float]:
        return finish_segmentation(stats)

    @property
    def confusion(self) -> torch.Tensor:
        """The confusion matrix so far (row = target class, column = predicted class)."""
        return self._stats["confusion"]


# ------------------------------------------------------------------------- depth
def _squeeze_channel(x: torch.Tensor, name: str) -> torch.Tensor:
    if x.ndim == 4 and x.shape[1] == 1:
        return x[:, 0]
    if x.ndim == 3:
        return x
    raise ValueError(f"{name} must have shape (B, 1, H, W) or (B, H, W), got {tuple(x.shape)}")


def depth_statistics(prediction: torch.Tensor, target: torch.Tensor) -> Statistics:
    """Sums of absolute and relative depth error of one batch, in float64.

    `prediction` and `target`: (B, 1, H, W) or (B, H, W), positive depths.
    Valid pixels: ``t != 0`` and `t` finite. Returns ``abs_sum = sum |p - t|``,
    ``rel_sum = sum |p - t| / t`` (float64) and ``count`` (int64), all over
    valid pixels.
    """
    p = _squeeze_channel(prediction, "prediction")
    t = _squeeze_channel(target, "target")
    if p.shape != t.shape:
        raise ValueError(
            f"prediction and target must have the same (B, H, W), "
            f"got {tuple(prediction.shape)} and {tuple(target.shape)}"
        )
    valid = (t != 0) & torch.isfinite(t)
    p64 = p[valid].to(torch.float64)
    t64 = t[valid].to(torch.float64)
    error = (p64 - t64).abs()
    return {
        "abs_sum": error.sum(),
        "rel_sum": (error / t64).sum(),
        "count": valid.sum().to(torch.int64),
    }


def finish_depth(stats: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """Pixel-weighted depth errors over the split.

    ::

        abs_err = sum |p - t| / n        rel_err = sum (|p - t| / t) / n

    with sums and `n` over all valid pixels of the split (not a mean of
    per-batch means). Both nan when ``n == 0``.

    >>> s = {"abs_sum": torch.tensor(3.0), "rel_sum": torch.tensor(1.0), "count": torch.tensor(3)}
    >>> finish_depth(s)
    {'abs_err': 1.0, 'rel_err': 0.3333333333333333}
    """
    n = int(stats["count"])
    if n == 0:
        return {"abs_err": NAN, "rel_err": NAN}
    return {"abs_err": float(stats["abs_sum"]) / n, "rel_err": float(stats["rel_sum"]) / n}


class DepthState(MetricState):
    """Depth over a split: float64 error sums and a valid-pixel count (see `finish_depth`)."""

    metrics: ClassVar[tuple[Metric, ...]] = (
        Metric("abs_err", False, "sum |p - t| / n over pixels with t != 0"),
        Metric("rel_err", False, "sum (|p - t| / t) / n over pixels with t != 0"),
    )

    def config(self) -> dict[str, int]:
        return {}

    def _empty(self) -> Statistics:
        return {
            "abs_sum": torch.zeros((), dtype=torch.float64),
            "rel_sum": torch.zeros((), dtype=torch.float64),
            "count": torch.zeros((), dtype=torch.int64),
        }

    def _batch(self, prediction: torch.Tensor, target: torch.Tensor) -> Statistics:
        return depth_statistics(prediction, target)

    def _finish(self, stats: Statistics) -> dict[str, float]:
        return finish_depth(stats)


# ----------------------------------------------------------------------- normals
NORMAL_THRESHOLDS: tuple[tuple[str, float], ...] = (
    ("within_11_25", 11.25),
    ("within_22_5", 22.5),
    ("within_30", 30.0),
)
_NORMAL_EPS = 1e-12


def normal_angles(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Angular errors in degrees (float64) at the valid pixels, flattened.

    ``angle = degrees(acos(clamp(<p / max(|p|, eps), t>, -1, 1)))`` with
    ``eps = 1e-12``, so an all-zero prediction counts as 90 degrees. `target`
    is taken as unit vectors (not renormalised). Valid pixels: `t` not all
    zero and finite.
    """
    if prediction.ndim != 4 or prediction.shape[1] != 3:
        raise ValueError(f"prediction must have shape (B, 3, H, W), got {tuple(prediction.shape)}")
    if target.shape != prediction.shape:
        raise ValueError(
            f"target must have the prediction's shape {tuple(prediction.shape)}, "
            f"got {tuple(target.shape)}"
        )
    valid = (target != 0).any(dim=1) & torch.isfinite(target).all(dim=1)
    p = prediction.to(torch.float64).permute(0, 2, 3, 1)[valid]
    t = target.to(torch.float64).permute(0, 2, 3, 1)[valid]
    p = p / p.norm(dim=1, keepdim=True).clamp_min(_NORMAL_EPS)
    cosine = (p * t).sum(dim=1).clamp(-1.0, 1.0)
    return torch.rad2deg(torch.acos(cosine))


def normal_statistics(
    prediction: torch.Tensor, target: torch.Tensor, bins_per_degree: int
) -> Statistics:
    """Statistics of the angular error of one batch (see `normal_angles`).

    Returns ``angle_sum`` (float64), ``count``, ``nonfinite`` (valid pixels
    whose angle is not finite, from a non-finite prediction), one count of
    ``angle < threshold`` per threshold (strict), and ``histogram``: int64
    counts of finite angles in ``180 * bins_per_degree`` bins of width
    ``1 / bins_per_degree`` degrees over [0, 180] (180 falls in the last bin).
    """
    angles = normal_angles(prediction, target)
    finite = torch.isfinite(angles)
    num_bins = 180 * bins_per_degree
    index = torch.floor(angles[finite] * bins_per_degree).to(torch.int64).clamp(0, num_bins - 1)
    stats: Statistics = {
        "angle_sum": angles.sum(),
        "count": torch.tensor(angles.numel(), dtype=torch.int64, device=angles.device),
        "nonfinite": (~finite).sum().to(torch.int64),
        "histogram": torch.bincount(index, minlength=num_bins),
    }
    for name, threshold in NORMAL_THRESHOLDS:
        stats[name] = (angles < threshold).sum().to(torch.int64)
    return stats


def _histogram_quantile_rank(cumulative: torch.Tensor, counts: torch.Tensor, rank: int) -> float:
    """Value (in bins) of the `rank`-th smallest angle (1-based), spread linearly in its bin.

    The ``h`` angles of bin ``k`` are placed at ``k + (j - 0.5) / h``,
    ``j = 1..h``: linear interpolation of the empirical distribution inside
    the bin, so the value is in the bin of the true angle.
    """
    k = int(torch.searchsorted(cumulative, torch.tensor(rank, dtype=cumulative.dtype)))
    before = int(cumulative[k - 1]) if k > 0 else 0
    return k + (rank - before - 0.5) / int(counts[k])


def finish_normal(stats: Mapping[str, torch.Tensor], bins_per_degree: int) -> dict[str, float]:
    """Angular-error metrics over the split, in degrees and fractions.

    With `n` valid pixels and angles ``a_i``::

        mean_angle   = sum a_i / n                      (exact, float64)
        median_angle = median of a_i, from the histogram (see below)
        within_X     = #{i : a_i < X} / n               (exact), X = 11.25, 22.5, 30

    The median is the middle order statistic (mean of the two middle ones for
    even `n`), each read from the histogram with the angles of its bin spread
    evenly over the bin; it is exact to the bin width ``1 / bins_per_degree``
    degree (0.01 by default). All nan when ``n == 0`` or when a valid pixel
    had a non-finite angle.
    """
    names = ["mean_angle", "median_angle", *(name for name, _ in NORMAL_THRESHOLDS)]
    n = int(stats["count"])
    if n == 0 or int(stats["nonfinite"]) > 0:
        return dict.fromkeys(names, NAN)
    counts = stats["histogram"]
    cumulative = counts.cumsum(0)
    if n % 2 == 1:
        median_bins = _histogram_quantile_rank(cumulative, counts, (n + 1) // 2)
    else:
        median_bins = 0.5 * (
            _histogram_quantile_rank(cumulative, counts, n // 2)
            + _histogram_quantile_rank(cumulative, counts, n // 2 + 1)
        )
    result = {
        "mean_angle": float(stats["angle_sum"]) / n,
        "median_angle": median_bins / bins_per_degree,
    }
    for name, _ in NORMAL_THRESHOLDS:
        result[name] = int(stats[name]) / n
    return result


class NormalState(MetricState):
    """Surface normals over a split: angle sum, threshold counts, angle histogram.

    `bins_per_degree` sets the histogram's bin width, ``1 / bins_per_degree``
    degree, which bounds the median's error (see `finish_normal`).
    """

    metrics: ClassVar[tuple[Metric, ...]] = (
        Metric("mean_angle", False, "mean angular error in degrees over pixels with t != 0"),
        Metric("median_angle", False, "median angular error in degrees, exact to the bin width"),
        Metric("within_11_25", True, "fraction of pixels with angular error < 11.25 degrees"),
        Metric("within_22_5", True, "fraction of pixels with angular error < 22.5 degrees"),
        Metric("within_30", True, "fraction of pixels with angular error < 30 degrees"),
    )

    def __init__(self, bins_per_degree: int = 100) -> None:
        self.bins_per_degree = _check_positive_int("bins_per_degree", bins_per_degree)
        super().__init__()

    def config(self) -> dict[str, int]:
        return {"bins_per_degree": self.bins_per_degree}

    def _empty(self) -> Statistics:
        stats: Statistics = {
            "angle_sum": torch.zeros((), dtype=torch.float64),
            "count": torch.zeros((), dtype=torch.int64),
            "nonfinite": torch.zeros((), dtype=torch.int64),
            "histogram": torch.zeros(180 * self.bins_per_degree, dtype=torch.int64),
        }
        for name, _ in NORMAL_THRESHOLDS:
            stats[name] = torch.zeros((), dtype=torch.int64)
        return stats

    def _batch(self, prediction: torch.Tensor, target: torch.Tensor) -> Statistics:
        return normal_statistics(prediction, target, self.bins_per_degree)

    def _finish(self, stats: Statistics) -> dict[str, float]:
        return finish_normal(stats, self.bins_per_degree)

    @property
    def bin_width(self) -> float:
        """Histogram bin width in degrees: the median's error bound."""
        return 1.0 / self.bins_per_degree


# ---------------------------------------------------------------- classification
def classification_statistics(
    prediction: torch.Tensor, target: torch.Tensor, num_classes: int
) -> Statistics:
    """Confusion matrix of one batch of image-level class predictions.

    `prediction`: logits (B, C), the predicted class is their argmax (the
    first maximum on ties); `target`: integer labels (B,) in [0, C).

    Returns ``confusion`` (C x C, int64, row = target class, column =
    predicted class) and ``nonfinite`` (int64: samples with a non-finite logit).
    """
    c = num_classes
    if prediction.ndim != 2 or prediction.shape[1] != c:
        raise ValueError(
            f"prediction must be logits of shape (B, {c}), got {tuple(prediction.shape)}"
        )
    if target.shape != prediction.shape[:1]:
        raise ValueError(
            f"target must have shape ({prediction.shape[0]},) (B,), got {tuple(target.shape)}"
        )
    if target.dtype.is_floating_point or target.dtype.is_complex or target.dtype == torch.bool:
        raise ValueError(f"target must hold integer labels, got dtype {target.dtype}")
    labels = target.to(torch.int64)
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= c):
        raise ValueError(
            f"target labels must lie in [0, {c}), got {int(labels.min())} to {int(labels.max())}"
        )
    index = labels * c + prediction.argmax(dim=1)
    confusion = torch.bincount(index, minlength=c * c).reshape(c, c)
    nonfinite = (~torch.isfinite(prediction).all(dim=1)).sum()
    return {"confusion": confusion, "nonfinite": nonfinite.to(torch.int64)}


def finish_classification(stats: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """Accuracy and balanced accuracy from a confusion matrix ``M`` (row = target).

    ::

        accuracy          = trace(M) / sum(M)
        balanced_accuracy = mean over {c : sum_k M[c, k] > 0} of M[c, c] / sum_k M[c, k]

    Balanced accuracy is the macro-average of per-class recall: a class
    absent from the targets is left out of the mean (as scikit-learn's
    `balanced_accuracy_score` does). Both are nan when no sample was counted
    or when a sample had a non-finite logit.

    >>> m = torch.tensor([[3, 1], [0, 1]])
    >>> finish_classification({"confusion": m, "nonfinite": torch.tensor(0)})
    {'accuracy': 0.8, 'balanced_accuracy': 0.875}
    """
    m = stats["confusion"].to(torch.float64)
    total = float(m.sum())
    if total == 0 or int(stats["nonfinite"]) > 0:
        return {"accuracy": NAN, "balanced_accuracy": NAN}
    support = m.sum(dim=1)
    present = support > 0
    recall = m.diagonal()[present] / support[present]
    return {"accuracy": float(m.trace()) / total, "balanced_accuracy": float(recall.mean())}


class ClassificationState(MetricState):
    """Image-level classification over a split: one int64 confusion matrix.

    See `finish_classification`. Balanced accuracy rather than macro-F1 as
    the second metric: it is defined whenever a class occurs in the targets
    (F1 is 0/0 for a class neither present nor predicted), and it shows a
    model that wins accuracy by always answering the most frequent class.
    """

    metrics: ClassVar[tuple[Metric, ...]] = (
        Metric("accuracy", True, "correctly classified images / images"),
        Metric(
            "balanced_accuracy",
            True,
            "mean over classes present in the targets of the class's recall",
        ),
    )

    def __init__(self, num_classes: int) -> None:
        self.num_classes = _check_positive_int("num_classes", num_classes)
        super().__init__()

    def config(self) -> dict[str, int]:
        return {"num_classes": self.num_classes}

    def _empty(self) -> Statistics:
        c = self.num_classes
        return {
            "confusion": torch.zeros(c, c, dtype=torch.int64),
            "nonfinite": torch.zeros((), dtype=torch.int64),
        }

    def _batch(self, prediction: torch.Tensor, target: torch.Tensor) -> Statistics:
        return classification_statistics(prediction, target, self.num_classes)

    def _finish(self, stats: Statistics) -> dict[str, float]:
        return finish_classification(stats)


# -------------------------------------------------------------------- regression
def _scalar_per_image(x: torch.Tensor, name: str) -> torch.Tensor:
    if x.ndim == 2 and x.shape[1] == 1:
        return x[:, 0]
    if x.ndim == 1:
        return x
    raise ValueError(f"{name} must have shape (B, 1) or (B,), got {tuple(x.shape)}")


def regression_statistics(prediction: torch.Tensor, target: torch.Tensor) -> Statistics:
    """Sums of absolute and squared error of one batch of image-level values, in float64.

    `prediction` and `target`: (B, 1) or (B,). Returns ``abs_sum = sum |p - t|``,
    ``sq_sum = sum (p - t)^2`` (float64), ``count`` and ``nonfinite``
    (int64: samples with a non-finite prediction).
    """
    p = _scalar_per_image(prediction, "prediction")
    t = _scalar_per_image(target, "target")
    if p.shape != t.shape:
        raise ValueError(
            f"prediction and target must hold one value per image, "
            f"got {tuple(prediction.shape)} and {tuple(target.shape)}"
        )
    error = p.to(torch.float64) - t.to(torch.float64)
    return {
        "abs_sum": error.abs().sum(),
        "sq_sum": (error * error).sum(),
        "count": torch.tensor(error.numel(), dtype=torch.int64, device=error.device),
        "nonfinite": (~torch.isfinite(p)).sum().to(torch.int64),
    }


def finish_regression(stats: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """Mean absolute and root-mean-square error over the split.

    ::

        mae  = sum |p - t| / n        rmse = sqrt(sum (p - t)^2 / n)

    Both nan when ``n == 0`` or when a prediction was not finite.

    >>> s = {"abs_sum": torch.tensor(4.0), "sq_sum": torch.tensor(10.0),
    ...      "count": torch.tensor(2), "nonfinite": torch.tensor(0)}
    >>> finish_regression(s)
    {'mae': 2.0, 'rmse': 2.23606797749979}
    """
    n = int(stats["count"])
    if n == 0 or int(stats["nonfinite"]) > 0:
        return {"mae": NAN, "rmse": NAN}
    return {"mae": float(stats["abs_sum"]) / n, "rmse": math.sqrt(float(stats["sq_sum"]) / n)}


class RegressionState(MetricState):
    """Image-level regression over a split: float64 error sums and counts.

    See `finish_regression`.
    """

    metrics: ClassVar[tuple[Metric, ...]] = (
        Metric("mae", False, "sum |p - t| / n over the images"),
        Metric("rmse", False, "sqrt(sum (p - t)^2 / n) over the images"),
    )

    def config(self) -> dict[str, int]:
        return {}

    def _empty(self) -> Statistics:
        return {
            "abs_sum": torch.zeros((), dtype=torch.float64),
            "sq_sum": torch.zeros((), dtype=torch.float64),
            "count": torch.zeros((), dtype=torch.int64),
            "nonfinite": torch.zeros((), dtype=torch.int64),
        }

    def _batch(self, prediction: torch.Tensor, target: torch.Tensor) -> Statistics:
        return regression_statistics(prediction, target)

    def _finish(self, stats: Statistics) -> dict[str, float]:
        return finish_regression(stats)
