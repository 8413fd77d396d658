"""Checkpoints: a run interrupted after epoch k and resumed equals one never interrupted."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path
from typing import Any

import pytest
import torch

from runners.benchmarks import BENCHMARKS
from runners.step import TrainingStep
from runners.train import RunResult, build, restore_training_state, train, training_state
from runners.weighting import WEIGHTINGS


class Interrupted(Exception):
    pass


def mini(weighting: dict[str, Any], scheduler: dict[str, Any] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "benchmark": "synthetic-scenes-mini",
        "protocol_version": 1,
        "architecture": {"name": "hard-sharing", "backbone": "small-cnn"},
        "weighting": weighting,
        "optimizer": {"name": "adam", "lr": 1e-3, "weight_decay": 0.0},
    }
    if scheduler is not None:
        spec["scheduler"] = scheduler
    return spec


def interrupted_then_resumed(
    spec: dict[str, Any], seed: int, stop_after: int, path: Path
) -> RunResult:
    """Stop the run when epoch `stop_after` has ended (before its checkpoint), then resume."""

    def stop(done: int, _total: int) -> None:
        if done == stop_after:
            raise Interrupted

    with pytest.raises(Interrupted):
        train(spec, seed, progress=stop, checkpoint=path)
    assert path.exists()  # the state of epoch stop_after - 1 was saved
    resumed_epochs: list[int] = []
    result = train(spec, seed, progress=lambda d, _t: resumed_epochs.append(d), checkpoint=path)
    assert resumed_epochs[0] == stop_after  # resumed, not restarted: epoch stop_after is redone
    assert result.resumed_from_epoch == stop_after - 2  # 0-based: the last epoch saved
    return result


@pytest.mark.parametrize(
    ("weighting", "scheduler"),
    [
        # Learnt parameters in the run's optimiser, plus a scheduler.
        ({"name": "uncertainty"}, {"name": "cosine"}),
        # State of its own: a lazily built optimiser, the previous step's losses.
        ({"name": "famo"}, None),
    ],
)
def test_resumed_run_is_bit_identical(
    weighting: dict[str, Any], scheduler: dict[str, Any] | None, tmp_path: Path
) -> None:
    torch.set_num_threads(1)
    spec = mini(weighting, scheduler)
    assert BENCHMARKS.get("synthetic-scenes-mini").protocol(1).checkpoint_every == 1
    whole = train(spec, 3)
    resumed = interrupted_then_resumed(spec, 3, 2, tmp_path / "job" / "checkpoint.pt")
    assert whole.resumed_from_epoch is None
    assert resumed.metrics == whole.metrics  # exact equality
    assert resumed.curves == whole.curves
    assert not list(tmp_path.glob("**/*.partial"))  # written atomically: no temp left


def test_no_checkpoint_without_a_path_or_with_checkpoint_every_zero(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    benchmark = BENCHMARKS.get("synthetic-scenes-mini")
    never = dataclasses.replace(benchmark.protocol(1), checkpoint_every=0)
    monkeypatch.setitem(benchmark.protocols, 1, never)
    path = tmp_path / "checkpoint.pt"
    train(mini({"name": "equal"}), 0, checkpoint=path)
    assert not path.exists()


def test_every_weighting_state_round_trips_through_weights_only_load(tmp_path: Path) -> None:
    """A method's state after some epochs, saved and loaded into a fresh one, is the same state.

    (Loss histories, generators, lazily created buffers: whatever the method keeps.)
    """
    torch.manual_seed(0)
    for name in WEIGHTINGS.names():
        method = WEIGHTINGS.get(name)(3)
        for _ in range(3):
            method.end_epoch(torch.rand(3) + 0.5)
        path = tmp_path / f"{name}.pt"
        torch.save(method.checkpoint_state(), path)
        fresh = WEIGHTINGS.get(name)(3)
        fresh.load_checkpoint_state(torch.load(path, weights_only=True))
        again = method.checkpoint_state()
        loaded = fresh.checkpoint_state()
        assert _equal(again, loaded), name


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and bool(
            a.shape == b.shape and ((a == b) | (a.isnan() & b.isnan())).all()
        )
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


# --- every registered method, after real steps --------------------------------------------

MINI = BENCHMARKS.get("synthetic-scenes-mini")


@pytest.fixture(scope="module")
def batches() -> list[dict[str, torch.Tensor]]:
    data = MINI.load("train", MINI.protocol(1))
    return [{k: v[i : i + 2] for k, v in data.items()} for i in (0, 2, 4, 6)]


def _steps(
    spec: dict[str, Any], batches: list[dict[str, torch.Tensor]], state: dict[str, Any] | None
) -> tuple[Any, ...]:
    """Build, restore `state` if given, train two 'epochs' of two steps each from there.

    Returns what the run ends with; with `state` None, also the state after the first epoch.
    """
    protocol = MINI.protocol(1)
    model, weighting, optimizer, scheduler = build(spec, MINI, protocol)
    generator = torch.Generator().manual_seed(5)
    epochs = [0, 1]
    if state is not None:
        restore_training_state(state, model, weighting, optimizer, scheduler, generator)
        epochs = [1]
    step = TrainingStep(model, weighting, optimizer, MINI.tasks, "cpu")
    saved, seen = None, []
    for epoch in epochs:
        losses = torch.zeros(len(MINI.tasks))
        for batch in batches[2 * epoch : 2 * epoch + 2]:
            step_losses, weights = step(batch)
            losses += step_losses
            seen.append(torch.cat([step_losses, weights]))
        weighting.end_epoch(losses / 2)
        if epoch == 0:
            # Through a file, read as the worker reads it.
            buffer = io.BytesIO()
            torch.save(
                training_state(0, model, weighting, optimizer, scheduler, generator, []), buffer
            )
            buffer.seek(0)
            saved = torch.load(buffer, weights_only=True)
            seen = []  # compare the second epoch only
    return saved, seen, model.state_dict(), weighting.checkpoint_state(), torch.get_rng_state()


@pytest.mark.parametrize("name", WEIGHTINGS.names())
def test_every_method_resumes_bit_identically_after_real_steps(
    name: str, batches: list[dict[str, torch.Tensor]]
) -> None:
    """Per-step state (DTP's KPIs, DB-MTL's averages, GradNorm's initial losses, GradVac's
    targets, the draws of PCGrad, RLW and GradDrop) survives a checkpoint exactly."""
    torch.set_num_threads(1)
    params = {"task_weights": [1.0, 2.0, 0.5]} if name == "fixed" else {}
    spec = mini({"name": name, **params}, {"name": "cosine"})
    torch.manual_seed(0)
    state, *whole = _steps(spec, batches, None)
    torch.manual_seed(1)  # the resumed run starts elsewhere: only the checkpoint may matter
    _, *resumed = _steps(spec, batches, state)
    seen, model, method, rng = whole
    assert len(seen) == 2 and _equal(resumed[0], seen), "losses and weights of the steps"
    assert _equal(resumed[1], model), "model"
    assert _equal(resumed[2], method), "the method's state"
    assert torch.equal(resumed[3], rng), "the global generator"
