"""Every architecture on every backbone: predictions, the exact split of parameters, z."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from runners.benchmarks import BENCHMARKS
from runners.models import ARCHITECTURES, BACKBONES, BackboneChoice, MultiTaskModel
from runners.models.resize import bilinear
from runners.tasks import Classification, Depth, Normal, Regression, Segmentation, Task
from runners.weighting import StepGraph
from runners.weighting.base import flatten, task_jacobian

TASKS = BENCHMARKS.get("synthetic-scenes").tasks
NAMES = tuple(t.name for t in TASKS)
# Dense tasks, and image-level ones of mixed type (classification and regression).
TASK_SETS = {"scenes": TASKS, "shapes": BENCHMARKS.get("synthetic-shapes").tasks}


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    # Small convolutions: threads only add contention with whatever else runs.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def cheap(backbone: str) -> BackboneChoice:
    """The backbone narrow enough for a test; small-cnn as the benchmark uses it."""
    return BackboneChoice(backbone, {} if backbone == "small-cnn" else {"width_multiplier": 0.125})


# Architecture parameters besides the defaults worth checking, as functions of the
# backbone's number of stages n and the task names.
VARIANTS: dict[str, dict[str, Any]] = {
    "branched": {
        # A tree with three branch points: stage 1 shared by all, stage n shared by none.
        "tree": lambda n, names: {"branch_points": {names[0]: 1, names[1]: n - 1, names[2]: n}},
        # Every task branches after stage 1: the trunk's output is a shared representation.
        "fork": lambda n, names: {"branch_points": dict.fromkeys(names, 1)},
        # Two tasks share the first stage; the third shares nothing.
        "loner": lambda n, names: {"branch_points": {names[0]: 0, names[1]: 1, names[2]: 1}},
    }
}


def cases() -> Iterator[Any]:
    for architecture in ARCHITECTURES:
        variants = {"": lambda n, names: {}, **VARIANTS.get(architecture, {})}
        for variant in variants:
            for backbone in BACKBONES:
                # 64x64 (the benchmark's size) on its backbone; shapes at 64 for all elsewhere.
                for size in (32, 64) if backbone == "small-cnn" else (32,):
                    name = f"{architecture}{':' + variant if variant else ''}-{backbone}-{size}"
                    yield pytest.param(architecture, variant, backbone, size, "scenes", id=name)
            # Image-level tasks on the backbone and at the size of synthetic-shapes.
            name = f"{architecture}{':' + variant if variant else ''}-small-cnn-32-shapes"
            yield pytest.param(architecture, variant, "small-cnn", 32, "shapes", id=name)


def build(
    architecture: str, variant: str, backbone: str, tasks: tuple[Task, ...] = TASKS
) -> MultiTaskModel:
    choice = cheap(backbone)
    names = tuple(t.name for t in tasks)
    kwargs = (
        VARIANTS[architecture][variant](choice.encoder_type.num_stages, names) if variant else {}
    )
    torch.manual_seed(0)
    model = ARCHITECTURES.get(architecture)(tasks, choice, **kwargs)
    return model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]


def random_target(task: Task, size: int, g: torch.Generator) -> torch.Tensor:
    """A batch of two targets for `task` at `size` x `size`."""
    if isinstance(task, Segmentation):
        return torch.randint(0, task.num_classes, (2, size, size), generator=g)
    if isinstance(task, Depth):
        return torch.rand(2, 1, size, size, generator=g) + 0.1
    if isinstance(task, Normal):
        return torch.nn.functional.normalize(torch.randn(2, 3, size, size, generator=g), dim=1)
    if isinstance(task, Classification):
        return torch.randint(0, task.num_classes, (2,), generator=g)
    assert isinstance(task, Regression)
    # Counts from 1 to 4: above an untrained head's outputs, so that the two images' L1
    # gradients have the same sign and cannot cancel in a bias's gradient.
    return 1 + 3 * torch.rand(2, generator=g)


def batch(
    size: int, tasks: tuple[Task, ...] = TASKS
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    image = torch.randn(2, 3, size, size, generator=g)
    targets = {t.name: random_target(t, size, g) for t in tasks}
    return image.contiguous(memory_format=torch.channels_last), targets


def prediction_shape(task: Task, batch_size: int, size: int) -> tuple[int, ...]:
    """Dense: one prediction per pixel at the input's size; image-level: one per image."""
    if task.dense:
        return (batch_size, task.out_channels, size, size)
    return (batch_size, task.out_channels)


def nonzero(grad: torch.Tensor | None) -> bool:
    return grad is not None and bool(grad.abs().sum() > 0)


@pytest.mark.parametrize(("architecture", "variant", "backbone", "size", "task_set"), list(cases()))
def test_architecture_contract(
    architecture: str, variant: str, backbone: str, size: int, task_set: str
) -> None:
    tasks = TASK_SETS[task_set]
    model = build(architecture, variant, backbone, tasks)
    image, targets = batch(size, tasks)

    # Predictions with each task's channels (dense ones at full resolution), in training and
    # in evaluation.
    for train in (False, True):
        model.train(train)
        representation, outputs = model(image)
        for task in tasks:
            assert outputs[task.name].shape == prediction_shape(task, 2, size), task.name
    losses = [model.training_loss(t, outputs, targets[t.name]) for t in tasks]
    assert all(bool(torch.isfinite(loss)) for loss in losses)

    # Every parameter is either shared or one task's own, exactly once.
    shared = model.shared_parameters()
    own = {t.name: model.task_parameters(t.name) for t in tasks}
    listed = [id(p) for p in shared] + [id(p) for ps in own.values() for p in ps]
    assert sorted(listed) == sorted(id(p) for p in model.parameters())

    # Task t's loss depends on every parameter of its own, on none of another task's own,
    # and every shared parameter is something at least two tasks' losses depend on.
    everything = list(model.parameters())
    users = {id(p): 0 for p in shared}
    for t, loss in zip(tasks, losses, strict=True):
        grads = torch.autograd.grad(loss, everything, retain_graph=True, allow_unused=True)
        by_id = {id(p): g for p, g in zip(everything, grads, strict=True)}
        for u, params_u in own.items():
            for p in params_u:
                if u == t.name:
                    assert nonzero(by_id[id(p)]), f"{t.name}'s own parameter gets no gradient"
                else:
                    assert not nonzero(by_id[id(p)]), f"{t.name} moves a parameter of {u}'s"
        for p in shared:
            users[id(p)] += nonzero(by_id[id(p)])
    assert all(count >= 2 for count in users.values()), "a shared parameter serves < 2 tasks"
    if not ARCHITECTURES.get(architecture).single_task:
        assert shared, "a multi-task architecture shares nothing"

    # With a shared representation z, the two-stage Jacobian equals plain per-task backward.
    if representation is not None:
        expected = []
        own_grads = []
        for t, loss in zip(tasks, losses, strict=True):
            grads = torch.autograd.grad(loss, [*shared, *own[t.name]], retain_graph=True)
            expected.append(flatten(grads[: len(shared)], shared))
            own_grads.append(grads[len(shared) :])
        model.zero_grad(set_to_none=True)
        graph = StepGraph(losses, representation, shared, [own[t.name] for t in tasks])
        # float32 sums in another order: agreement to 1e-4 relative.
        tolerance = {"rtol": 1e-4, "atol": 1e-6}
        torch.testing.assert_close(task_jacobian(graph), torch.stack(expected), **tolerance)
        for t, grads in zip(tasks, own_grads, strict=True):
            for p, g in zip(own[t.name], grads, strict=True):
                torch.testing.assert_close(p.grad, g, **tolerance)


@pytest.mark.parametrize("backbone", BACKBONES.names())
@pytest.mark.parametrize("architecture", ARCHITECTURES.names())
def test_predictions_have_the_input_size(architecture: str, backbone: str) -> None:
    model = ARCHITECTURES.get(architecture)(TASKS, cheap(backbone)).eval()
    for size in (32, 64, 96):
        with torch.no_grad():
            _, outputs = model(torch.randn(1, 3, size, size))
        for task in TASKS:
            assert outputs[task.name].shape == (1, task.out_channels, size, size)


@pytest.mark.parametrize("backbone", BACKBONES.names())
def test_backbone_stages_describe_their_outputs(backbone: str) -> None:
    encoder = cheap(backbone).build().eval()
    assert len(encoder.stages) == type(encoder).num_stages
    image = torch.randn(2, 3, 64, 64)
    x, memory = image, []
    for index, (channels, stride) in enumerate(
        zip(encoder.stage_channels, encoder.stage_strides, strict=True)
    ):
        x = encoder.run_stage(index, x, memory)
        assert x.shape == (2, channels, 64 // stride, 64 // stride), index
    torch.testing.assert_close(encoder(image), x)


@pytest.mark.parametrize("backbone", BACKBONES.names())
def test_every_backbone_has_a_width_multiplier(backbone: str) -> None:
    fields = BACKBONES.parameters(backbone).model_fields
    assert fields["width_multiplier"].default == 1.0
    narrow = BackboneChoice(backbone, {"width_multiplier": 0.25}).build()
    wide = BackboneChoice(backbone, {"width_multiplier": 0.5}).build()
    assert wide.stage_channels == tuple(2 * c for c in narrow.stage_channels)


def test_default_small_cnn_models_are_unchanged() -> None:
    # The parameter counts of the results already on the leaderboard.
    counts = {
        name: sum(p.numel() for p in ARCHITECTURES.get(name)(TASKS, "small-cnn").parameters())
        for name in ("hard-sharing", "single-task")
    }
    assert counts == {"hard-sharing": 47_130, "single-task": 99_194}


def test_dilated_resnets_have_output_stride_8_and_torchvision_widths() -> None:
    r18 = BACKBONES.get("resnet18-dilated")()
    r50 = BACKBONES.get("resnet50-dilated")()
    assert r18.stage_channels == (64, 128, 256, 512)
    assert r50.stage_channels == (256, 512, 1024, 2048)
    assert r18.stride == r50.stride == 8
    # torchvision's ResNet-18 / -50 have 11,689,512 / 25,557,032 parameters, fc included.
    assert sum(p.numel() for p in r18.parameters()) == 11_689_512 - (512 * 1000 + 1000)
    assert sum(p.numel() for p in r50.parameters()) == 25_557_032 - (2048 * 1000 + 1000)
    # Dilation replaces the strides of layer3 and layer4 (first 3x3 keeps the previous one).
    layer4 = r50.stages[3]
    assert [b.conv2.dilation for b in layer4] == [(2, 2), (4, 4), (4, 4)]
    assert [b.conv2.stride for b in layer4] == [(1, 1)] * 3


def test_segnet_has_the_mtan_widths() -> None:
    segnet = BACKBONES.get("segnet")()
    assert segnet.stage_channels == (64, 128, 256, 512, 512, 512, 256, 128, 64, 64)
    assert segnet.stride == 1


def test_branched_trees_span_hard_sharing_to_single_task() -> None:
    def count(points: dict[str, int]) -> int:
        model = ARCHITECTURES.get("branched")(TASKS, "small-cnn", branch_points=points)
        return sum(p.numel() for p in model.parameters())

    assert count({}) == count(dict.fromkeys(NAMES, 3)) == 47_130  # hard sharing
    # One task apart from the start, two sharing one stage: between the two extremes.
    assert 47_130 < count({"segmentation": 0, "depth": 1, "normal": 1}) < 99_194
    tree = ARCHITECTURES.get("branched")(
        TASKS, "small-cnn", branch_points={"segmentation": 1, "depth": 3, "normal": 3}
    )
    # Stage 1 shared by all; stages 2-3 shared by depth and normal; segmentation's own 2-3.
    trunk = {id(p) for s in tree.trunk.stages for p in s.parameters()}
    assert {id(p) for p in tree.shared_parameters()} == trunk
    assert set(tree.branches) == {"segmentation"}


def test_branched_rejects_unknown_tasks_and_stages() -> None:
    with pytest.raises(ValueError, match=r"no task 'segmentaton'.*did you mean 'segmentation'"):
        ARCHITECTURES.get("branched")(TASKS, "small-cnn", branch_points={"segmentaton": 1})
    with pytest.raises(ValueError, match="the backbone has 3, so a branch point is 0 to 3"):
        ARCHITECTURES.get("branched")(TASKS, "small-cnn", branch_points={"depth": 4})
    with pytest.raises(ValueError, match="no stage is shared by two tasks"):
        apart = {"segmentation": 0, "depth": 0, "normal": 3}
        ARCHITECTURES.get("branched")(TASKS, "small-cnn", branch_points=apart)


def test_cross_stitch_starts_from_alpha_self() -> None:
    model = ARCHITECTURES.get("cross-stitch")(TASKS, "small-cnn", alpha_self=0.9)
    expected = torch.full((3, 3), 0.05)
    expected.fill_diagonal_(0.9)
    for alpha in model.alpha:
        torch.testing.assert_close(alpha.detach(), expected)


def test_pad_net_supervises_its_initial_predictions() -> None:
    model = ARCHITECTURES.get("pad-net")(TASKS, "small-cnn", auxiliary_weight=0.5)
    image, targets = batch(32)
    _, outputs = model(image)
    depth = BENCHMARKS.get("synthetic-scenes").task("depth")
    expected = depth.loss(outputs["depth"], targets["depth"]) + 0.5 * depth.loss(
        outputs["depth/aux"], targets["depth"]
    )
    torch.testing.assert_close(model.training_loss(depth, outputs, targets["depth"]), expected)
    model.eval()
    assert set(model(image)[1]) == set(NAMES)  # evaluation reads the final predictions only


def test_every_backbone_builds_on_the_meta_device() -> None:
    # The validator counts parameters there: nothing may need real data to be built.
    with torch.device("meta"):
        for backbone in BACKBONES:
            for architecture in ARCHITECTURES:
                model = ARCHITECTURES.get(architecture)(TASKS, backbone)
                assert all(p.is_meta for p in model.parameters())


def parameters_of(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


@pytest.mark.parametrize(
    ("shape", "size"),
    [((2, 16, 16, 16), (32, 32)), ((2, 8, 8, 8), (32, 32)), ((1, 4, 36, 48), (72, 96)),
     ((2, 3, 5, 7), (9, 13))],
)  # fmt: skip
def test_bilinear_as_matrix_products_equals_interpolate(
    shape: tuple[int, ...], size: tuple[int, int]
) -> None:
    """The CUDA form of bilinear upsampling (deterministic backward) is F.interpolate's map."""
    x = torch.randn(shape).contiguous(memory_format=torch.channels_last).requires_grad_()
    expected = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    got = bilinear(x, size, matmul=True)
    torch.testing.assert_close(got, expected, rtol=0, atol=2e-6)
    assert got.is_contiguous(memory_format=torch.channels_last)
    cotangent = torch.randn_like(expected)
    (grad_expected,) = torch.autograd.grad(expected, x, cotangent)
    (grad_got,) = torch.autograd.grad(got, x, cotangent)
    torch.testing.assert_close(grad_got, grad_expected, rtol=0, atol=1e-5)
    # On the CPU, `bilinear` is F.interpolate itself: results unchanged bit for bit.
    assert torch.equal(bilinear(x, size), expected)
