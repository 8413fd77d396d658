"""Image-level metrics (classification, regression) against plain numpy references.

Tolerances: accuracy and balanced accuracy are ratios of integer counts and
agree with numpy to 1e-12 relative; MAE and RMSE are float64 sums and agree
to 1e-12 relative (only the order of the additions differs). Merged states
equal one pass bit for bit on integer statistics and to 1e-12 relative on
float64 sums.
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Callable

import numpy as np
import pytest
import torch

from runners.metrics import ClassificationState, MetricState, RegressionState
from runners.tasks import Classification, Regression


def np_classification(logits: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """Straight from the labels, one class at a time; no confusion matrix."""
    pred = logits.argmax(axis=1)
    recalls = [np.mean(pred[target == k] == k) for k in np.unique(target)]
    return {
        "accuracy": float(np.mean(pred == target)),
        "balanced_accuracy": float(np.mean(recalls)),
    }


def np_regression(pred: np.ndarray, target: np.ndarray) -> dict[str, float]:
    err = pred.reshape(-1).astype(np.float64) - target.astype(np.float64)
    return {"mae": float(np.mean(np.abs(err))), "rmse": float(np.sqrt(np.mean(err**2)))}


def random_classification(seed: int, n: int, c: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, generator=g), torch.randint(0, c, (n,), generator=g)


def random_regression(seed: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, generator=g) * 3, torch.rand(n, generator=g) * 4


def assert_metrics(got: dict[str, float], expected: dict[str, float]) -> None:
    assert list(got) == list(expected)
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, rel=1e-12, abs=1e-15), name


@pytest.mark.parametrize("seed", range(4))
def test_classification_matches_numpy(seed: int) -> None:
    logits, target = random_classification(seed, n=257, c=5)
    state = ClassificationState(5)
    state.update(logits, target)
    assert_metrics(state.compute(), np_classification(logits.numpy(), target.numpy()))


@pytest.mark.parametrize("seed", range(4))
def test_regression_matches_numpy(seed: int) -> None:
    pred, target = random_regression(seed, n=257)
    state = RegressionState()
    state.update(pred, target)
    assert_metrics(state.compute(), np_regression(pred.numpy(), target.numpy()))
    # A (B,) prediction is the same as a (B, 1) one.
    flat = RegressionState()
    flat.update(pred[:, 0], target)
    assert flat.compute() == state.compute()


@pytest.mark.parametrize("seed", range(3))
def test_merge_of_parts_equals_one_pass(seed: int) -> None:
    logits, labels = random_classification(seed, n=100, c=4)
    pred, values = random_regression(seed, n=100)
    cuts = sorted(np.random.default_rng(seed).choice(np.arange(1, 100), size=4, replace=False))
    bounds = [0, *cuts, 100]
    cases: list[tuple[MetricState, Callable[[], MetricState], torch.Tensor, torch.Tensor]] = [
        (ClassificationState(4), lambda: ClassificationState(4), logits, labels),
        (RegressionState(), RegressionState, pred, values),
    ]
    for whole, new, p, t in cases:
        parts = [new() for _ in range(len(bounds) - 1)]
        whole.update(p, t)
        for part, lo, hi in zip(parts, bounds[:-1], bounds[1:], strict=True):
            part.update(p[lo:hi], t[lo:hi])
        merged = parts[0]
        for part in parts[1:]:
            merged.merge(part)
        for key, value in whole.statistics().items():
            if value.dtype.is_floating_point:
                torch.testing.assert_close(merged.statistics()[key], value, rtol=1e-12, atol=0)
            else:
                assert torch.equal(merged.statistics()[key], value), key
        assert_metrics(merged.compute(), whole.compute())


def test_class_absent_from_targets_is_left_out_of_balanced_accuracy() -> None:
    # Class 1 never occurs in the targets, but is predicted once (for a class-0 image).
    logits = torch.eye(3)[[0, 1, 2, 2, 0]] * 5
    target = torch.tensor([0, 0, 2, 2, 2])
    state = ClassificationState(3)
    state.update(logits, target)
    # accuracy 3/5; recall of class 0 = 1/2, of class 2 = 2/3; class 1 has no target.
    assert state.compute() == pytest.approx(
        {"accuracy": 0.6, "balanced_accuracy": (0.5 + 2 / 3) / 2}
    )
    assert_metrics(state.compute(), np_classification(logits.numpy(), target.numpy()))


def test_single_sample() -> None:
    state = ClassificationState(3)
    state.update(torch.tensor([[0.1, 2.0, -1.0]]), torch.tensor([1]))
    assert state.compute() == {"accuracy": 1.0, "balanced_accuracy": 1.0}
    regression = RegressionState()
    regression.update(torch.tensor([[2.5]]), torch.tensor([1.0]))
    assert regression.compute() == {"mae": 1.5, "rmse": 1.5}


def test_ties_go_to_the_first_class() -> None:
    state = ClassificationState(2)
    state.update(torch.zeros(2, 2), torch.tensor([0, 1]))
    assert state.compute() == {"accuracy": 0.5, "balanced_accuracy": 0.5}


def test_nan_when_empty_or_a_prediction_is_not_finite() -> None:
    assert all(math.isnan(v) for v in ClassificationState(3).compute().values())
    assert all(math.isnan(v) for v in RegressionState().compute().values())
    classification = ClassificationState(2)
    classification.update(torch.tensor([[float("nan"), 0.0], [3.0, 0.0]]), torch.tensor([0, 0]))
    assert all(math.isnan(v) for v in classification.compute().values())
    regression = RegressionState()
    regression.update(torch.tensor([float("inf"), 1.0]), torch.tensor([0.0, 1.0]))
    assert all(math.isnan(v) for v in regression.compute().values())


def test_bad_input_is_a_clear_error() -> None:
    state = ClassificationState(3)
    with pytest.raises(
        ValueError, match=r"prediction must be logits of shape \(B, 3\), got \(2, 4\)"
    ):
        state.update(torch.zeros(2, 4), torch.zeros(2, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"target labels must lie in \[0, 3\), got 0 to 3"):
        state.update(torch.zeros(2, 3), torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="integer labels"):
        state.update(torch.zeros(2, 3), torch.zeros(2))
    with pytest.raises(ValueError, match=r"one value per image, got \(2, 1\) and \(3,\)"):
        RegressionState().update(torch.zeros(2, 1), torch.zeros(3))
    with pytest.raises(ValueError, match=r"prediction must have shape \(B, 1\) or \(B,\)"):
        RegressionState().update(torch.zeros(2, 2), torch.zeros(2))
    # Nothing was added by the failed updates.
    assert int(state.statistics()["confusion"].sum()) == 0
    with pytest.raises(ValueError, match="num_classes must be at least 2, got 1"):
        Classification("x", num_classes=1)


def test_round_trip_through_pickle() -> None:
    logits, target = random_classification(0, n=20, c=3)
    state = ClassificationState(3)
    state.update(logits, target)
    assert pickle.loads(pickle.dumps(state)).compute() == state.compute()


def test_task_losses_and_directions() -> None:
    classification = Classification("shape", num_classes=3)
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    target = torch.tensor([0, 2])
    # Cross-entropy by hand: -log softmax at the target, averaged.
    expected = (-(2 - math.log(math.exp(2) + 2)) + math.log(3)) / 2
    assert float(classification.loss(logits, target)) == pytest.approx(expected, rel=1e-6)
    regression = Regression("count")
    assert float(regression.loss(torch.tensor([[1.0], [4.0]]), torch.tensor([2.0, 2.0]))) == 1.5
    assert [(m.name, m.higher_is_better) for m in classification.metrics] == [
        ("accuracy", True),
        ("balanced_accuracy", True),
    ]
    assert [(m.name, m.higher_is_better) for m in regression.metrics] == [
        ("mae", False),
        ("rmse", False),
    ]
    assert not classification.dense and not regression.dense
    assert classification.new_state().config() == {"num_classes": 3}
