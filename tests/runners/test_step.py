"""The training step: which plan each method gets on CUDA, and what the CPU can check of it.

CUDA graphs cannot be captured without a GPU; what the capture relies on is
checked here: the warm-up's state is restored exactly, the two parts of a
"split" step are the eager step op for op, graph-safe methods keep their
state in the same tensors, and results repeat for a seed.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import torch

from runners.benchmarks import BENCHMARKS
from runners.benchmarks.synthetic_scenes import SyntheticScenes
from runners.step import State, TrainingStep, graph_plan
from runners.train import build, train
from runners.weighting import WEIGHTINGS, Weighting
from runners.weighting.base import GramAggregation

MINI = BENCHMARKS.get("synthetic-scenes-mini")
PROTOCOL = MINI.protocol(1)
CUDA = torch.device("cuda")  # a device object only: nothing runs on it here


def spec(weighting: str, optimizer: str = "adam", **params: Any) -> dict[str, Any]:
    return {
        "benchmark": MINI.name,
        "protocol_version": 1,
        "architecture": {"name": "hard-sharing", "backbone": "small-cnn"},
        "weighting": {"name": weighting, **params},
        "optimizer": {"name": optimizer, "lr": 1e-3, "weight_decay": 0.0},
    }


def setup(
    weighting: str, *, batched: bool | None = None
) -> tuple[TrainingStep, dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    model, method, optimizer, _ = build(spec(weighting), MINI, PROTOCOL)
    model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    data = MINI.load("train", PROTOCOL)
    batch = {k: v[:4] for k, v in data.items()}
    step = TrainingStep(model, method, optimizer, MINI.tasks, "cpu", batched_jacobian=batched)
    return step, batch


def state_of(step: TrainingStep) -> dict[str, torch.Tensor]:
    """Every tensor a step changes: parameters, buffers, the method's and the optimiser's state."""
    tensors = {f"model.{k}": v for k, v in step.model.state_dict().items()}
    for path, saved in step.weighting.checkpoint_state().items():
        for kind in ("parameters", "buffers"):
            for name, value in saved[kind].items():
                if value is not None:
                    tensors[f"weighting.{path}.{kind}.{name}"] = value
    for i, state in enumerate(step.optimizer.state.values()):
        for name, value in state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.{i}.{name}"] = value
    return {k: v.detach().clone() for k, v in tensors.items()}


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, different[:5]


def gram_methods() -> list[str]:
    return [n for n in WEIGHTINGS.names() if issubclass(WEIGHTINGS.get(n), GramAggregation)]


def graph_safe_methods() -> list[str]:
    return [n for n in WEIGHTINGS.names() if WEIGHTINGS.get(n).graph_safe]


def test_graph_plans_on_cuda() -> None:
    def plan(name: str, optimizer: str = "adam", **kwargs: Any) -> str:
        torch.manual_seed(0)
        _, method, opt, _ = build(spec(name, optimizer), MINI, PROTOCOL)
        return graph_plan(method, opt, kwargs.pop("device", CUDA), **kwargs)[0]

    assert graph_safe_methods() == ["dtp", "dwa", "equal", "fixed", "gls", "uncertainty"]
    for name in graph_safe_methods():
        assert plan(name) == "whole"
    # Every solver on the Gram matrix: two graphs around the one host copy of G.
    assert gram_methods() == [
        "aligned-mtl", "cagrad", "gradvac", "imtl", "mgda", "nash-mtl", "pcgrad", "upgrad"
    ]  # fmt: skip
    for name in gram_methods():
        assert plan(name) == "split"
    # A draw from a CPU generator, a mask from the global RNG, a host-side step
    # counter, a solver on z's gradients, a learnt weighting with its own optimiser.
    for name in ("rlw", "graddrop", "db-mtl", "mgda-ub", "gradnorm", "famo"):
        assert plan(name) == "eager", name
    assert plan("equal", "sgd") == "eager"  # SGD reads its learning rate on the host
    assert plan("equal", data_parallel=True) == "eager"
    assert plan("pcgrad", device=torch.device("cpu")) == "eager"
    eager = ["rlw", "graddrop", "db-mtl", "mgda-ub", "gradnorm", "famo"]
    # Every method is classified above.
    assert sorted([*graph_safe_methods(), *gram_methods(), *eager]) == sorted(WEIGHTINGS.names())


@pytest.mark.parametrize("name", graph_safe_methods())
def test_graph_safe_methods_keep_their_state_in_the_same_tensors(name: str) -> None:
    """A replay reads and writes the tensors the capture saw: state must change in place."""
    step, batch = setup(name)

    def addresses(method: Weighting) -> dict[str, int]:
        found = {}
        for path, saved in method.checkpoint_state().items():
            for kind in ("parameters", "buffers", "attributes"):
                for key, value in saved[kind].items():
                    if isinstance(value, torch.Tensor):
                        found[f"{path}.{kind}.{key}"] = value.data_ptr()
        return found

    step(batch)  # lazily created state exists from the first step on
    before = addresses(step.weighting)
    for _ in range(3):
        losses, _ = step(batch)
        step.weighting.end_epoch(losses.detach())
    assert addresses(step.weighting) == before


@pytest.mark.parametrize("name", ["equal", "uncertainty", "dtp", "pcgrad", "gradvac", "upgrad"])
def test_warm_up_steps_are_undone_exactly(name: str) -> None:
    """Before a capture, warm-up steps run on the state and are then undone: they leave no trace."""
    warmed, batch = setup(name)
    saved = State(warmed.model, warmed.weighting, warmed.optimizer, torch.device("cpu"))
    for _ in range(2):
        warmed(batch)
    saved.restore()
    warmed(batch)
    fresh, _ = setup(name)
    fresh(batch)
    assert_same(state_of(warmed), state_of(fresh))


@pytest.mark.parametrize("name", gram_methods())
def test_the_two_parts_of_a_split_step_are_the_eager_step(name: str) -> None:
    """What the two graphs capture, with the host's solve between them, is the eager step."""
    eager, batch = setup(name)
    split, _ = setup(name)
    method = split.weighting
    assert isinstance(method, GramAggregation)
    for _ in range(2):
        losses, weights = eager(batch)
        split_losses, jacobian, gram = split.jacobian_part(batch)
        host = method.weights_from_gram(gram.to("cpu", torch.float64))
        split_weights = host.to(jacobian.device, jacobian.dtype)
        split.update_part(split_weights, jacobian)
        assert torch.equal(split_losses, losses) and torch.equal(split_weights, weights)
    assert_same(state_of(eager), state_of(split))


@pytest.mark.parametrize("batched", [False, True])
def test_steps_repeat_bit_for_bit_for_a_seed(batched: bool) -> None:
    """Same seed, same device: same parameters after a few steps (batched Jacobian included)."""
    torch.set_num_threads(1)
    results = []
    for _ in range(2):
        step, batch = setup("upgrad", batched=batched)
        for _ in range(3):
            step(batch)
        results.append(state_of(step))
    assert_same(*results)


# A protocol of 8 scenes, batch 4, 2 epochs: `train` twice per method, in seconds.
TINY = SyntheticScenes(
    "test-step-scenes",
    "synthetic-scenes-mini with 8 train / 8 test scenes, batch 4, 2 epochs (tests only).",
    {1: dataclasses.replace(PROTOCOL, train_size=8, test_size=8, epochs=2, batch_size=4)},
)


@pytest.mark.parametrize("name", ["equal", "dwa", "mgda"])
def test_training_is_deterministic_per_seed_on_the_cpu(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The claim of runners.step on the CPU: the same seed gives the same metrics and curves."""
    monkeypatch.setitem(BENCHMARKS._entries, TINY.name, TINY)
    torch.set_num_threads(1)
    runs = [train({**spec(name), "benchmark": TINY.name}, seed=3) for _ in range(2)]
    assert runs[0].metrics == runs[1].metrics
    assert runs[0].curves == runs[1].curves
    assert runs[0].peak_gpu_memory_bytes is None  # measured on CUDA only
