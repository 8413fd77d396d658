"""Method zoo II: CGC, PLE, DSelect-k, NDDR-CNN, MTI-Net, LTB.

The registry-wide contracts (tests/runners/test_models.py, test_train.py,
test_models_examples.py) cover them as they cover every architecture; here:
hand-computed values of their pieces, their reductions to hard sharing, their
pairing, the protocols' size limits and their example specs trained for a step.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from runners.benchmarks import BENCHMARKS
from runners.benchmarks.synthetic_scenes import SyntheticScenes
from runners.models import ARCHITECTURES, BACKBONES, MultiTaskModel
from runners.models.base import paired_initialisation
from runners.models.dselect_k import DSelectGate, binary_codes, regulariser, smooth_step
from runners.models.gating import mixture
from runners.models.ltb import LearningToBranch
from runners.models.mti_net import FeaturePropagation, scale_stages
from runners.models.resize import bilinear
from runners.protocol_checks import parameter_count
from runners.train import train
from submissions.loader import parse
from submissions.spec import validate

SCENES = BENCHMARKS.get("synthetic-scenes")
TASKS = SCENES.tasks
EXAMPLES = Path(__file__).resolve().parents[2] / "submissions" / "examples"
ZOO = ("cgc", "ple", "dselect-k", "nddr-cnn", "mti-net", "ltb")


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def image(size: int = 32, batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0))


# ---- DSelect-k ---------------------------------------------------------------------------


def test_smooth_step_hand_values() -> None:
    t = torch.tensor([-1.0, -0.5, -0.25, 0.0, 0.25, 0.5, 1.0])
    # -2 t^3 + 3 t / 2 + 1/2 at gamma = 1: 5/32 at -1/4, 27/32 at 1/4; 0 and 1 outside.
    expected = torch.tensor([0.0, 0.0, 5 / 32, 0.5, 27 / 32, 1.0, 1.0])
    torch.testing.assert_close(smooth_step(t, 1.0), expected)
    # At gamma = 2 the transition is twice as wide: S(1/2) = -1/32 + 3/8 + 1/2.
    torch.testing.assert_close(smooth_step(torch.tensor(0.5), 2.0), torch.tensor(27 / 32))


def test_binary_codes_are_expert_indices_most_significant_bit_first() -> None:
    assert binary_codes(4).int().tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]]
    assert binary_codes(3).int().tolist() == [[0, 0], [0, 1], [1, 0]]
    assert binary_codes(2).int().tolist() == [[0], [1]]
    assert binary_codes(5).shape == (5, 3)


def forced_gate(num_experts: int) -> DSelectGate:
    """Selector 0 picks code (1, 0) = expert 2, selector 1 code (0, 0) = expert 0; weights 1:3."""
    gate = DSelectGate(in_features=6, num_experts=num_experts, k=2, gamma=1.0)
    with torch.no_grad():
        gate.z_logits.weight.zero_()
        gate.z_logits.bias.copy_(torch.tensor([1.0, -1.0, -1.0, -1.0]))
        gate.w_logits.weight.zero_()
        gate.w_logits.bias.copy_(torch.tensor([0.0, math.log(3.0)]))
    return gate


def test_dselect_gate_with_saturated_selectors_picks_the_coded_experts() -> None:
    weights, selectors = forced_gate(4)(torch.randn(5, 6))
    torch.testing.assert_close(selectors[0], torch.tensor([[0.0, 0, 1, 0], [1, 0, 0, 0]]))
    torch.testing.assert_close(weights, torch.tensor([[0.75, 0, 0.25, 0]]).expand(5, 4))


def test_dselect_selectors_are_distributions_over_a_power_of_two() -> None:
    gate = DSelectGate(in_features=6, num_experts=8, k=3, gamma=1.0)
    with torch.no_grad():
        gate.z_logits.weight.normal_(0, 2)  # spread over the transition and beyond
    weights, selectors = gate(torch.randn(7, 6))
    torch.testing.assert_close(selectors.sum(dim=2), torch.ones(7, 3))
    torch.testing.assert_close(weights.sum(dim=1), torch.ones(7))
    assert bool((weights >= 0).all())


def test_dselect_regulariser_hand_values() -> None:
    # Untrained selectors over 4 experts are uniform (S(0) = 1/2 per bit): entropy log 4
    # each, 2 selectors per image, a mean over images.
    uniform = torch.full((3, 2, 4), 0.25)
    expected = 0.1 * 2 * -4 * 0.25 * math.log(0.25 + 1e-6)
    torch.testing.assert_close(regulariser(uniform, 0.1, True), torch.tensor(expected))
    one_hot = torch.tensor([[[0.0, 1, 0, 0], [1, 0, 0, 0]]])
    assert float(regulariser(one_hot, 1.0, True)) == pytest.approx(0.0, abs=1e-5)
    # Three experts: the codes' mass left on (1, 1) is pushed back, 1 / sum_j r per selector.
    three = torch.full((1, 2, 3), 0.25)
    expected = 2 * -3 * 0.25 * math.log(0.25 + 1e-6) * 1e-6 + 2 / 0.75
    torch.testing.assert_close(regulariser(three, 1e-6, False), torch.tensor(expected))


def test_dselect_k_adds_its_regulariser_to_each_task_loss_in_training_only() -> None:
    model = ARCHITECTURES.get("dselect-k")(TASKS, "small-cnn", num_experts=3, entropy_weight=0.5)
    x = image()
    depth = SCENES.task("depth")
    target = torch.rand(2, 1, 32, 32) + 0.1
    _, outputs = model(x)
    selectors = outputs["depth/selectors"]
    assert selectors.shape == (2, 2, 3)
    penalty = regulariser(selectors, 0.5, power_of_two=False)
    expected = depth.loss(outputs["depth"], target) + penalty
    torch.testing.assert_close(model.training_loss(depth, outputs, target), expected)
    model.eval()
    _, outputs = model(x)
    assert set(outputs) == {t.name for t in TASKS}
    torch.testing.assert_close(
        model.training_loss(depth, outputs, target), depth.loss(outputs["depth"], target)
    )


def test_dselect_k_refuses_more_selections_than_experts() -> None:
    with pytest.raises(ValueError, match="num_nonzeros: 5 experts to select, but num_experts is 4"):
        ARCHITECTURES.get("dselect-k")(TASKS, "small-cnn", num_nonzeros=5)
    text = (
        "spec_version: 1\nname: x\nbenchmark: synthetic-scenes\n"
        "architecture: {name: dselect-k, backbone: small-cnn, num_experts: 2, num_nonzeros: 3}\n"
        "weighting: {name: equal}\noptimizer: {name: adam, lr: 1e-3}\n"
    )
    spec, problems = validate(parse(text.encode(), ".yaml"))
    assert spec is None
    assert [str(p) for p in problems] == [
        "architecture.num_nonzeros: 3 experts to select, but num_experts is 2"
    ]


# ---- CGC and PLE: reductions to hard sharing ---------------------------------------------


def paired(architecture: str, seed: int = 7, **params: Any) -> MultiTaskModel:
    with paired_initialisation(seed):
        model: MultiTaskModel = ARCHITECTURES.get(architecture)(TASKS, "small-cnn", **params)
    return model.eval()


def saturate(linear: torch.nn.Linear, index: int) -> None:
    """A softmax gate that puts all its weight on expert `index`."""
    with torch.no_grad():
        linear.weight.zero_()
        linear.bias.fill_(-1e4)
        linear.bias[index] = 1e4


@pytest.mark.parametrize("architecture", ["cgc", "ple"])
def test_gates_on_the_first_shared_expert_are_hard_sharing(architecture: str) -> None:
    hps = paired("hard-sharing")
    model = paired(architecture, num_shared_experts=2, num_task_experts=2)
    gates = [g.linear for g in model.modules() if type(g).__name__ == "SoftmaxGate"]
    assert gates
    for gate in gates:
        saturate(gate, 0)
    x = image()
    with torch.no_grad():
        _, expected = hps(x)
        _, got = model(x)
    for task in TASKS:
        torch.testing.assert_close(got[task.name], expected[task.name], rtol=1e-5, atol=1e-6)


def test_cgc_gates_mix_the_shared_and_own_experts_by_their_weights() -> None:
    model = paired("cgc", num_shared_experts=1, num_task_experts=1)
    with torch.no_grad():
        gate = model.gates["depth"].linear
        gate.weight.zero_()
        gate.bias.copy_(torch.tensor([0.0, math.log(3.0)]))  # softmax: 1/4 shared, 3/4 own
    x = image()
    with torch.no_grad():
        _, outputs = model(x)
        mixed = 0.25 * model.shared_experts[0](x) + 0.75 * model.task_experts["depth"][0](x)
        torch.testing.assert_close(outputs["depth"], model.heads["depth"](mixed))


def test_mixture_is_the_weighted_sum() -> None:
    features = [torch.randn(2, 3, 4, 4) for _ in range(3)]
    weights = torch.tensor([[0.2, 0.3, 0.5], [1.0, 0.0, 0.0]])
    expected = torch.einsum("be,ebchw->bchw", weights, torch.stack(features))
    torch.testing.assert_close(mixture(weights, features), expected)


# ---- NDDR-CNN ----------------------------------------------------------------------------


def test_nddr_layers_start_as_alpha_own_plus_beta_others() -> None:
    model = ARCHITECTURES.get("nddr-cnn")(TASKS, "small-cnn", alpha=0.8, beta=0.15).eval()
    layer = model.nddr[0][1]  # into task 1 (depth) after stage 1: 16 channels per task
    xs = [torch.rand(2, 16, 8, 8) for _ in TASKS]
    # Batch norm in evaluation at its initial statistics (mean 0, variance 1): x / sqrt(1 + eps).
    expected = (0.15 * xs[0] + 0.8 * xs[1] + 0.15 * xs[2]) / math.sqrt(1 + 1e-5)
    with torch.no_grad():
        torch.testing.assert_close(layer(torch.cat(xs, dim=1)), expected)
    assert layer.norm.momentum == 0.05


# ---- MTI-Net -----------------------------------------------------------------------------


def test_mti_net_scales_are_the_last_stage_of_each_stride_coarsest_first() -> None:
    strides = {name: BACKBONES.get(name)().stage_strides for name in ("small-cnn",)}
    assert scale_stages(strides["small-cnn"], 4) == [2, 1, 0]
    assert scale_stages(strides["small-cnn"], 2) == [2, 1]
    assert scale_stages((4, 8, 8, 8), 4) == [3, 0]  # the dilated ResNets
    assert scale_stages((2, 4, 8, 16, 32, 16, 8, 4, 2, 1), 4) == [6, 7, 8, 9]  # SegNet


def test_feature_propagation_masks_are_distributions_over_tasks() -> None:
    fpm = FeaturePropagation(3, 8).eval()
    captured: dict[str, torch.Tensor] = {}
    original = torch.softmax

    def spy(x: torch.Tensor, dim: int) -> torch.Tensor:
        captured["mask"] = original(x, dim=dim)
        return captured["mask"]

    features = [torch.rand(2, 8, 4, 4) for _ in range(3)]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch, "softmax", spy)
        out = fpm(features)
    torch.testing.assert_close(captured["mask"].sum(dim=0), torch.ones(2, 8, 4, 4))
    assert [o.shape for o in out] == [f.shape for f in features]


def test_mti_net_deeply_supervises_every_scale() -> None:
    model = ARCHITECTURES.get("mti-net")(TASKS, "small-cnn", auxiliary_weight=0.5)
    x = image()
    depth = SCENES.task("depth")
    target = torch.rand(2, 1, 32, 32) + 0.1
    refined: list[torch.Tensor] = []
    hooks = [
        block.register_forward_hook(lambda m, a, o: refined.append(o))
        for block in (model.refine[k][1] for k in range(3))  # depth's refinement per scale
    ]
    _, outputs = model(x)
    for hook in hooks:
        hook.remove()
    # One initial prediction per scale, from depth's features there, upsampled to 32x32.
    initial = [bilinear(model.initial["depth"][k](refined[k]), (32, 32)) for k in range(3)]
    torch.testing.assert_close(outputs["depth/aux"], torch.cat(initial))
    expected = depth.loss(outputs["depth"], target) + 0.5 * sum(
        depth.loss(p, target) for p in initial
    )
    torch.testing.assert_close(model.training_loss(depth, outputs, target), expected)
    model.eval()
    assert set(model(x)[1]) == {t.name for t in TASKS}


# ---- LTB ---------------------------------------------------------------------------------


def ltb_with_parents(parents: list[list[int]], tasks: Any = TASKS) -> LearningToBranch:
    """parents[s - 1][t]: the column that column t reads before stage s (as argmax logits)."""
    model = ARCHITECTURES.get("ltb")(tasks, "small-cnn")
    assert isinstance(model, LearningToBranch)
    with torch.no_grad():
        for s, row in enumerate(parents):
            for t, j in enumerate(row):
                model.logits[s][t].copy_(torch.nn.functional.one_hot(torch.tensor(j), len(tasks)))
    return model.eval()


def test_ltb_exports_its_tree_as_a_branched_spec() -> None:
    # Stage 1: every column reads column 0; stage 2: segmentation's own path, depth and
    # normal both read column 1.  So all share stage 1, depth and normal share stage 2.
    model = ltb_with_parents([[0, 0, 0], [0, 1, 1]])
    assert model.paths() == [[0, 0, 0], [0, 1, 1], [0, 1, 2]]
    section = model.branched_architecture()
    assert section == {
        "name": "branched",
        "backbone": "small-cnn",
        "head_width": 16,
        "branch_points": {"segmentation": 1, "depth": 2, "normal": 2},
    }
    text = yaml.safe_dump(
        {
            "spec_version": 1,
            "name": "ltb-tree",
            "benchmark": "synthetic-scenes",
            "architecture": section,
            "weighting": {"name": "equal"},
            "optimizer": {"name": "adam", "lr": 1e-3},
        }
    )
    spec, problems = validate(parse(text.encode(), ".yaml"))
    assert problems == [] and spec is not None
    # In evaluation the tree is what runs: column 2's first two stages are off every path,
    # column 0's first stage is on every one.
    x = image()
    with torch.no_grad():
        _, before = model(x)
        for s in (0, 1):
            for p in model.columns[2].stages[s].parameters():
                p.add_(1.0)
        _, after = model(x)
        assert all(torch.equal(before[t.name], after[t.name]) for t in TASKS)
        for p in model.columns[0].stages[0].parameters():
            p.add_(1.0)
        _, moved = model(x)
        assert not any(torch.equal(before[t.name], moved[t.name]) for t in TASKS)


def test_ltb_refuses_trees_that_branched_cannot_state() -> None:
    shapes = BENCHMARKS.get("synthetic-shapes").tasks
    two_trunks = ltb_with_parents([[0, 0, 0, 0], [0, 0, 2, 2]], shapes)
    with pytest.raises(
        ValueError, match=r"2 groups sharing stage 2 \(shape, colour; count, size\)"
    ):
        two_trunks.branched_architecture()
    apart = ltb_with_parents([[0, 1, 2], [0, 1, 2]])
    with pytest.raises(ValueError, match="shares no stage: that is the single-task architecture"):
        apart.branched_architecture()


def test_ltb_choices_follow_the_schedule() -> None:
    model = ARCHITECTURES.get("ltb")(TASKS, "small-cnn", warmup_steps=2, decay_steps=100)
    assert isinstance(model, LearningToBranch)
    with torch.no_grad():
        model.logits[0][1].copy_(torch.tensor([0.0, math.log(2.0), 0.0]))
    # Warm-up: the softmax of the logits; a training forward pass counts a step.
    torch.testing.assert_close(model.choices(1)[1], torch.tensor([0.25, 0.5, 0.25]))
    model(image())
    model(image())
    assert int(model.steps) == 2
    # Then hard samples, at tau = 10 / sqrt(1 + (302 - 2) / 100) = 5.
    model.steps.fill_(302)
    taus: list[float] = []
    original = torch.nn.functional.gumbel_softmax

    def spy(logits: torch.Tensor, tau: float, hard: bool, dim: int) -> torch.Tensor:
        taus.append(tau)
        return original(logits, tau=tau, hard=hard, dim=dim)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch.nn.functional, "gumbel_softmax", spy)
        choice = model.choices(1)
    assert taus == [pytest.approx(5.0)]
    assert sorted(choice.flatten().tolist()) == [0.0] * 6 + [1.0] * 3
    # Evaluation: the argmax, and no step counted.
    model.eval()
    assert model.choices(1)[1].tolist() == [0.0, 1.0, 0.0]
    model(image())
    assert int(model.steps) == 302


# ---- Every zoo architecture --------------------------------------------------------------


def test_defaults_fit_every_protocol_and_backbone() -> None:
    # Per (backbone, size limit), the benchmark with the most tasks: every zoo model grows
    # with the number of tasks (experts, columns or modules per task), so it is the largest.
    largest: dict[tuple[str, int], Any] = {}
    for name in BENCHMARKS:
        benchmark = BENCHMARKS.get(name)
        for protocol in benchmark.protocols.values():
            for backbone in protocol.backbones:
                key = (backbone, protocol.max_parameters)
                if key not in largest or len(benchmark.tasks) > len(largest[key].tasks):
                    largest[key] = benchmark
    assert {b for b, _ in largest} == {
        "small-cnn", "segnet", "resnet18-dilated", "resnet50-dilated"
    }  # fmt: skip
    for (backbone, limit), benchmark in largest.items():
        for architecture in ZOO:
            count = parameter_count({"name": architecture, "backbone": backbone}, benchmark)
            assert count <= limit, (benchmark.name, backbone, architecture, count)


@pytest.mark.parametrize("architecture", ZOO)
def test_the_first_backbone_and_the_heads_start_as_hard_sharings(architecture: str) -> None:
    hps = paired("hard-sharing", seed=3)
    model = paired(architecture, seed=3)
    first = next(m for m in model.modules() if type(m).__name__ == "SmallCNN")
    assert_same(hps.encoder, first)
    if architecture != "mti-net":  # its heads read every scale: another shape
        for task in TASKS:
            assert_same(hps.heads[task.name], model.heads[task.name])


def assert_same(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


# One step: the mini protocol v2 (paired initialisation, depth scaling) with 4 train and
# 4 test scenes, batch 4, one epoch.  In the registry only while a test runs.
MINI = BENCHMARKS.get("synthetic-scenes-mini")
ONE_STEP = SyntheticScenes(
    "test-one-step-scenes",
    "synthetic-scenes-mini v2 with 4 train / 4 test scenes, batch 4, 1 epoch (tests only).",
    {2: dataclasses.replace(MINI.protocol(2), train_size=4, test_size=4, epochs=1, batch_size=4)},
)


@pytest.mark.parametrize("architecture", ZOO)
def test_the_example_spec_trains_for_a_step(
    architecture: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(BENCHMARKS._entries, ONE_STEP.name, ONE_STEP)
    document = yaml.safe_load((EXAMPLES / f"{architecture}-equal.yaml").read_text())
    assert document["benchmark"] == "synthetic-scenes"
    spec = {**document, "benchmark": ONE_STEP.name, "protocol_version": 2}
    result = train(spec, seed=0)
    assert set(result.metrics) == {t.name for t in TASKS}
    assert all(math.isfinite(v) for m in result.metrics.values() for v in m.values())
    losses = [c for c in result.curves if c.name == "loss"]
    assert len(losses) == len(TASKS) and all(math.isfinite(c.value) for c in losses)
    assert result.parameter_count == parameter_count(document["architecture"], SCENES)
