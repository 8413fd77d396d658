"""Weighting and gradient methods: golden values, properties, and the cheap Jacobian."""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import pytest
import torch
from torch import nn

from runners.benchmarks import BENCHMARKS
from runners.models import ARCHITECTURES, BACKBONES, MultiTaskModel
from runners.models.base import BackboneChoice
from runners.weighting import WEIGHTINGS, StepGraph
from runners.weighting.base import (
    FORMERLY_SEEDED,
    GramAggregation,
    batched_by_default,
    batched_encoder_jacobian,
    task_jacobian,
)
from runners.weighting.dwa import DWA
from runners.weighting.mgda import MGDA, min_norm_weights
from runners.weighting.pcgrad import PCGrad, pcgrad_weights
from runners.weighting.uncertainty import Uncertainty


def test_pcgrad_golden_two_conflicting_gradients() -> None:
    # g1 = (1, 0), g2 = (-1, 1): g1' = (0.5, 0.5), g2' = (0, 1), update (0.5, 1.5) = 2 g1 + 1.5 g2.
    jacobian = torch.tensor([[1.0, 0.0], [-1.0, 1.0]], dtype=torch.float64)
    weights = pcgrad_weights(jacobian, torch.tensor([0, 1]))
    torch.testing.assert_close(weights, torch.tensor([2.0, 1.5], dtype=torch.float64))
    torch.testing.assert_close(weights @ jacobian, torch.tensor([0.5, 1.5], dtype=torch.float64))


def test_pcgrad_leaves_agreeing_gradients_alone() -> None:
    jacobian = torch.tensor([[1.0, 0.5], [0.5, 1.0], [1.0, 1.0]])
    torch.testing.assert_close(pcgrad_weights(jacobian, torch.tensor([2, 0, 1])), torch.ones(3))


def test_pcgrad_matches_the_papers_loop_on_random_gradients() -> None:
    generator = torch.Generator().manual_seed(0)
    jacobian = torch.randn(4, 7, generator=generator, dtype=torch.float64)
    order = torch.tensor([2, 0, 3, 1])
    expected = torch.zeros(7, dtype=torch.float64)
    for i in range(4):  # the reference loop of Yu et al.'s code
        g = jacobian[i].clone()
        for j in order.tolist():
            if j != i and g @ jacobian[j] < 0:
                g -= (g @ jacobian[j]) / (jacobian[j] @ jacobian[j]) * jacobian[j]
        expected += g
    torch.testing.assert_close(pcgrad_weights(jacobian, order) @ jacobian, expected)


def test_mgda_two_task_closed_form() -> None:
    # g1 = (1, 0), g2 = (0, 2): w1 = <g2 - g1, g2> / |g1 - g2|^2 = 4 / 5.
    jacobian = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
    torch.testing.assert_close(
        min_norm_weights(jacobian @ jacobian.T), torch.tensor([0.8, 0.2], dtype=torch.float64)
    )


def test_mgda_opposite_gradients_cancel() -> None:
    jacobian = torch.tensor([[1.0, 0.0], [-1.0, 0.0]], dtype=torch.float64)
    weights = min_norm_weights(jacobian @ jacobian.T)
    torch.testing.assert_close(weights, torch.tensor([0.5, 0.5], dtype=torch.float64))


def test_mgda_three_orthonormal_gradients_weigh_equally() -> None:
    torch.testing.assert_close(
        min_norm_weights(torch.eye(3, dtype=torch.float64)),
        torch.full((3,), 1 / 3, dtype=torch.float64),
        atol=1e-6,
        rtol=0,
    )


def test_mgda_three_tasks_matches_a_grid_search() -> None:
    generator = torch.Generator().manual_seed(3)
    jacobian = torch.randn(3, 5, generator=generator, dtype=torch.float64)
    gram = jacobian @ jacobian.T
    weights = min_norm_weights(gram, iterations=5000)
    steps = 400
    best = min(
        float(w @ gram @ w)
        for a, b in itertools.product(range(steps + 1), repeat=2)
        if a + b <= steps
        for w in [torch.tensor([a, b, steps - a - b], dtype=torch.float64) / steps]
    )
    assert float(weights @ gram @ weights) <= best + 1e-6
    assert abs(float(weights.sum()) - 1) < 1e-12 and bool((weights >= 0).all())


def test_mgda_direction_conflicts_with_no_task() -> None:
    generator = torch.Generator().manual_seed(1)
    jacobian = torch.randn(3, 10, generator=generator)
    direction = MGDA(3, iterations=5000).aggregate(jacobian) @ jacobian
    # Min-norm point d of the hull: <d, g_t> >= |d|^2 >= 0 for every task.
    assert bool((jacobian @ direction >= direction @ direction - 1e-4).all())


def test_dwa_weights_after_two_epochs() -> None:
    dwa = DWA(2, temperature=2.0)
    assert dwa.weights(torch.ones(2)).tolist() == [1.0, 1.0]
    dwa.end_epoch(torch.tensor([1.0, 2.0]))
    assert dwa.weights(torch.ones(2)).tolist() == [1.0, 1.0]
    dwa.end_epoch(torch.tensor([0.5, 2.0]))  # ratios r = (0.5, 1.0)
    e = torch.exp(torch.tensor([0.25, 0.5]))
    torch.testing.assert_close(dwa.weights(torch.ones(2)), 2 * e / e.sum())


def test_uncertainty_loss_and_gradient() -> None:
    uw = Uncertainty(2, initial_log_variance=0.5)
    losses = torch.tensor([2.0, 3.0], requires_grad=True)
    weights = uw.backward(StepGraph(list(losses), None, [], [[], []]))
    torch.testing.assert_close(weights, torch.exp(torch.tensor([-0.5, -0.5])))
    # d/ds [exp(-s) L + s] = 1 - exp(-s) L
    torch.testing.assert_close(
        uw.log_variance.grad, 1 - torch.exp(torch.tensor(-0.5)) * losses.detach()
    )


def test_repr_shows_hyperparameters() -> None:
    assert repr(DWA(3, temperature=1.5)) == "DWA(temperature=1.5)"
    assert repr(PCGrad(3)) == "PCGrad()"  # its seed is the platform's, not a parameter


class Toy(nn.Module):
    """A shared encoder and two heads, to compare the cheap Jacobian with plain backward passes."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 5))
        self.heads = nn.ModuleList([nn.Linear(5, 1), nn.Linear(5, 3)])


def toy_graph(model: Toy, with_representation: bool) -> StepGraph:
    x = torch.randn(8, 4, generator=torch.Generator().manual_seed(0))
    z = model.encoder(x)
    losses = [(h(z) ** 2).mean() for h in model.heads]
    return StepGraph(
        losses,
        z if with_representation else None,
        list(model.encoder.parameters()),
        [list(h.parameters()) for h in model.heads],
    )


@pytest.mark.parametrize("with_representation", [True, False])
def test_task_jacobian_equals_per_task_backward(with_representation: bool) -> None:
    torch.manual_seed(0)
    model = Toy()
    expected = []
    head_grads = []
    for t in range(2):
        graph = toy_graph(model, True)
        model.zero_grad()
        graph.task_losses[t].backward()
        expected.append(torch.cat([p.grad.reshape(-1) for p in model.encoder.parameters()]))
        head_grads.append([p.grad.clone() for p in model.heads[t].parameters()])
    model.zero_grad(set_to_none=True)
    jacobian = task_jacobian(toy_graph(model, with_representation))
    torch.testing.assert_close(jacobian, torch.stack(expected))
    for head, grads in zip(model.heads, head_grads, strict=True):  # each head: its own task
        for p, g in zip(head.parameters(), grads, strict=True):
            torch.testing.assert_close(p.grad, g)


@pytest.mark.parametrize("name", WEIGHTINGS.names())
def test_every_method_fills_shared_gradients(name: str) -> None:
    torch.manual_seed(0)
    model = Toy()
    method = WEIGHTINGS.get(name)(2)
    weights = method.backward(toy_graph(model, True))
    assert weights.shape == (2,) and bool(torch.isfinite(weights).all())
    for p in model.parameters():
        assert p.grad is not None and bool(torch.isfinite(p.grad).all())


# The batched Jacobian (one vmapped backward pass through the encoder for the T
# cotangents) against the per-task passes, for every architecture whose forward
# returns a shared representation z, with small-cnn, on the dense and on the
# image-level tasks; and for every backbone (at a quarter of its width, for
# time) under hard sharing.  A batching rule is needed by each operation of
# the encoder: the backbone's (every backbone's under hard sharing) and the
# architecture's own shared modules (gates, experts: each architecture's with
# small-cnn).  The whole product of the two, 45 cases, took 55 s of the suite
# for an option that is off by default.  In float64, so that the comparison
# is about the maths, not float32 rounding: "equal to 1e-6".
def representation_models() -> list[Any]:
    cases = []
    for benchmark in ("synthetic-scenes-mini", "synthetic-shapes-mini"):
        tasks = tuple(t.name for t in BENCHMARKS.get(benchmark).tasks)
        for architecture in ARCHITECTURES.names():
            every = benchmark == "synthetic-scenes-mini" and architecture == "hard-sharing"
            backbones = BACKBONES.names() if every else ["small-cnn"]
            for backbone in backbones:
                arch = ARCHITECTURES.get(architecture)
                if arch.provides_representation(tasks, BACKBONES.get(backbone), {}):
                    cases.append(pytest.param(benchmark, architecture, backbone))
    return cases


def representation_step(
    benchmark: str, architecture: str, backbone: str, dtype: torch.dtype = torch.float64
) -> tuple[MultiTaskModel, StepGraph]:
    torch.manual_seed(0)
    bench = BENCHMARKS.get(benchmark)
    data = bench.load("train", bench.protocol(1))
    width = 1.0 if backbone == "small-cnn" else 0.25
    choice = BackboneChoice.from_spec({"name": backbone, "width_multiplier": width})
    model = ARCHITECTURES.get(architecture)(bench.tasks, choice).to(dtype)
    model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    batch = {k: v[:2] for k, v in data.items()}
    z, outputs = model(batch["image"].to(dtype))
    assert z is not None
    losses = [model.training_loss(t, outputs, batch[t.name]) for t in bench.tasks]
    shared = model.shared_parameters()
    own = [model.task_parameters(t.name) for t in bench.tasks]
    return model, StepGraph(losses, z, shared, own)


def jacobian_of(benchmark: str, architecture: str, backbone: str, batched: bool) -> torch.Tensor:
    _, graph = representation_step(benchmark, architecture, backbone)
    return task_jacobian(dataclasses.replace(graph, batched_jacobian=batched))


@pytest.mark.parametrize(("benchmark", "architecture", "backbone"), representation_models())
def test_batched_jacobian_equals_the_looped_one(
    benchmark: str, architecture: str, backbone: str
) -> None:
    torch.set_num_threads(1)
    looped = jacobian_of(benchmark, architecture, backbone, batched=False)
    _, graph = representation_step(benchmark, architecture, backbone)
    z = graph.shared_representation
    assert z is not None
    cotangents = torch.stack(
        [torch.autograd.grad(loss, z, retain_graph=True)[0] for loss in graph.task_losses]
    )
    direct = batched_encoder_jacobian(z, graph.shared_parameters, cotangents)
    if backbone == "segnet":
        # max_unpool2d's backward has no batching rule for channels_last tensors:
        # vmap refuses, and task_jacobian falls back to the per-task passes.
        assert direct is None
    else:
        assert direct is not None
        torch.testing.assert_close(direct, looped, rtol=0, atol=1e-6)
    batched = jacobian_of(benchmark, architecture, backbone, batched=True)
    torch.testing.assert_close(batched, looped, rtol=0, atol=1e-6)
    assert looped.abs().max() > 1e-3  # not a comparison of zeros


def test_batched_jacobian_of_the_default_model_in_float32() -> None:
    torch.set_num_threads(1)
    step = ("synthetic-scenes-mini", "hard-sharing", "small-cnn", torch.float32)
    _, graph = representation_step(*step)
    looped = task_jacobian(dataclasses.replace(graph, batched_jacobian=False))
    _, graph = representation_step(*step)
    batched = task_jacobian(dataclasses.replace(graph, batched_jacobian=True))
    scale = float(looped.abs().max())
    assert float((batched - looped).abs().max()) <= 1e-6 * scale


def test_the_default_keeps_the_per_task_passes_bit_for_bit() -> None:
    # Batched passes were slower on the CPU and on an H200 (bench/README.md): off by default.
    torch.set_num_threads(1)
    assert not batched_by_default(torch.device("cpu"))
    assert not batched_by_default(torch.device("cuda"))
    _, graph = representation_step("synthetic-scenes-mini", "hard-sharing", "small-cnn")
    default = task_jacobian(graph)
    looped = jacobian_of("synthetic-scenes-mini", "hard-sharing", "small-cnn", batched=False)
    assert torch.equal(default, looped)


@pytest.mark.parametrize(
    "name", [n for n in WEIGHTINGS.names() if issubclass(WEIGHTINGS.get(n), GramAggregation)]
)
def test_gram_aggregations_depend_on_the_gram_matrix_only(name: str) -> None:
    """aggregate(J) is weights_from_gram(J J^T): the same for any J with that Gram matrix."""
    torch.manual_seed(0)
    jacobian = torch.randn(3, 7, dtype=torch.float64)
    rotation, _ = torch.linalg.qr(torch.randn(7, 7, dtype=torch.float64))
    first, second = WEIGHTINGS.get(name)(3), WEIGHTINGS.get(name)(3)
    torch.testing.assert_close(first.aggregate(jacobian), second.aggregate(jacobian @ rotation))


def test_db_mtl_keeps_the_steps_jacobian_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    """A method with its own `jacobian` (DB-MTL: of the log-losses) still batches when asked."""
    import runners.weighting.base as base

    calls = []
    batched = base.batched_encoder_jacobian

    def spy(*args: Any) -> torch.Tensor | None:
        calls.append(1)
        return batched(*args)

    monkeypatch.setattr(base, "batched_encoder_jacobian", spy)
    torch.manual_seed(0)
    model = Toy()
    method = WEIGHTINGS.get("db-mtl")(2)
    graph = dataclasses.replace(toy_graph(model, True), batched_jacobian=True)
    expected = method.jacobian(dataclasses.replace(toy_graph(model, True), batched_jacobian=False))
    assert not calls
    torch.testing.assert_close(method.jacobian(graph), expected)
    assert calls == [1]


@pytest.mark.parametrize("name", sorted(FORMERLY_SEEDED))
def test_stochastic_methods_take_no_seed_and_draw_from_the_platform_seed(name: str) -> None:
    """`seed` is no spec parameter; the generator starts where `seed: 0`, the old default, did."""
    assert "seed" not in WEIGHTINGS.parameters(name).model_fields
    method = WEIGHTINGS.get(name)(3)
    expected = torch.Generator().manual_seed(0).get_state()
    assert torch.equal(method._generator.get_state(), expected)
    method.reseed(5)  # what a stored spec's `seed: 5` asks for, on rerun
    assert torch.equal(method._generator.get_state(), torch.Generator().manual_seed(5).get_state())
