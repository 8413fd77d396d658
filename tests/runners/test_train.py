"""The training loop, over every registered architecture and weighting method."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from runners.benchmarks import BENCHMARKS
from runners.dispatch import execute
from runners.models import ARCHITECTURES
from runners.train import Diverged, train
from runners.weighting import WEIGHTINGS

MINI = BENCHMARKS.get("synthetic-scenes-mini")
PROTOCOL = MINI.protocol(1)


def spec(architecture: str, weighting: str, **weighting_params: Any) -> dict[str, Any]:
    return {
        "benchmark": MINI.name,
        "protocol_version": 1,
        "architecture": {"name": architecture, "backbone": "small-cnn"},
        "weighting": {"name": weighting, **weighting_params},
        "optimizer": {"name": "adam", "lr": 1e-3, "weight_decay": 0.0},
    }


COMBINATIONS = [
    (a, w)
    for a in ARCHITECTURES
    for w in WEIGHTINGS
    if ARCHITECTURES.get(a).allowed_weightings is None
    or w in ARCHITECTURES.get(a).allowed_weightings
]


@pytest.mark.parametrize(("architecture", "weighting"), COMBINATIONS)
def test_every_combination_trains(architecture: str, weighting: str) -> None:
    torch.set_num_threads(1)
    result = train(spec(architecture, weighting), seed=0)
    assert set(result.metrics) == {t.name for t in MINI.tasks}
    for task in MINI.tasks:
        assert list(result.metrics[task.name]) == [m.name for m in task.metrics]
        assert all(math.isfinite(v) for v in result.metrics[task.name].values())
    losses = [c for c in result.curves if c.name == "loss"]
    weights = [c for c in result.curves if c.name == "weight"]
    # One loss and one task weight per task per epoch.
    assert len(losses) == len(weights) == PROTOCOL.epochs * len(MINI.tasks)
    assert all(math.isfinite(c.value) for c in result.curves)
    # Training reduces the summed training loss over the run.
    first = sum(c.value for c in losses if c.epoch == 0)
    last = sum(c.value for c in losses if c.epoch == PROTOCOL.epochs - 1)
    assert last < first
    assert result.parameter_count > 0


def test_same_seed_same_metrics_other_seed_other_metrics() -> None:
    torch.set_num_threads(1)
    a = train(spec("hard-sharing", "pcgrad"), seed=1)
    b = train(spec("hard-sharing", "pcgrad"), seed=1)
    c = train(spec("hard-sharing", "pcgrad"), seed=2)
    assert a.metrics == b.metrics
    assert a.metrics != c.metrics


def test_non_finite_loss_is_reported_as_diverged(monkeypatch: pytest.MonkeyPatch) -> None:
    depth = MINI.task("depth")
    monkeypatch.setattr(type(depth), "loss", lambda self, p, t: (p - t).abs().mean() * math.nan)
    with pytest.raises(Diverged, match="not finite in epoch 0"):
        train(spec("hard-sharing", "equal"), seed=0)
    outcome = execute(spec("hard-sharing", "equal"), 0, cpus=1, gpus=0)
    assert outcome["state"] == "diverged"


def test_a_raising_job_is_reported_as_failed_with_its_error() -> None:
    bad = spec("hard-sharing", "equal")
    bad["optimizer"]["lr"] = 5.0  # over the protocol's maximum: the worker re-checks
    outcome = execute(bad, 0, cpus=1, gpus=0)
    assert outcome["state"] == "failed"
    assert "exceeds the protocol's maximum" in outcome["error"]
