"""The synthetic-attributes benchmarks: attribute values, determinism, task sets, a real run."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from db.delta_m import delta_m
from runners.benchmarks import BENCHMARKS
from runners.benchmarks.attributes import (
    ATTRIBUTES,
    FAMILY,
    Scene,
    attribute_values,
    render_scene,
    render_split,
)
from runners.benchmarks.shapes import COLOUR_NAMES, SHAPE_NAMES, ShapeObject
from runners.benchmarks.synthetic_attributes import SyntheticAttributes, attribute_tasks
from runners.tasks import Classification, Regression
from runners.train import train
from submissions.spec import validate
from submissions.submit import baseline_document

MINI = BENCHMARKS.get("synthetic-attributes-mini")
CIRCLE, SQUARE, PLUS = (SHAPE_NAMES.index(n) for n in ("circle", "square", "plus"))
RED, GREEN, BLUE = (COLOUR_NAMES.index(n) for n in ("red", "green", "blue"))


def test_a_known_scene_has_the_hand_computed_attributes() -> None:
    # Areas counted by hand in test_shapes.py: circle r=4 52 pixels, square r=2 16, plus r=3 20.
    objects = (
        ShapeObject(CIRCLE, BLUE, 8.0, 8.0, 4.0),  # top-left quadrant, the largest
        ShapeObject(SQUARE, GREEN, 24.0, 24.0, 2.0),  # bottom-right
        ShapeObject(PLUS, RED, 24.0, 8.0, 3.0),  # top-right
    )
    background = np.full((32, 32, 3), 128.0)
    scene = Scene(objects, (52, 16, 20), background, 32)
    values = attribute_values(scene)
    ones = {
        "has_circle", "has_red", "has_square", "has_plus", "has_green", "has_blue",
        "largest_is_circle", "largest_is_blue", "several", "crowded", "largest_left",
        "largest_top", "object_top_left", "object_top_right", "object_bottom_right",
        "bright_background",
    }  # fmt: skip
    expected = {a.name: float(a.name in ones) for a in ATTRIBUTES if a.kind == "binary"}
    expected |= {
        "count": 3.0,
        "largest_area": 52 / 1024,
        "largest_x": 0.25,
        "largest_y": 0.25,
        "total_area": 88 / 1024,
        "shape_kinds": 3.0,
        "colour_kinds": 3.0,
        "background_level": 128 / 255,
        "smallest_area": 16 / 1024,
        "spread": math.hypot(16, 16) / 32,  # circle to square, the farthest pair
    }
    assert values == pytest.approx(expected, rel=1e-12)
    # Two of a shape and a colour, a dark, warm background; one object: no spread.
    twins = (objects[0], ShapeObject(CIRCLE, BLUE, 24.0, 24.0, 2.0))
    dark_warm = np.full((32, 32, 3), 100.0)
    dark_warm[..., 0] = 110.0
    values = attribute_values(Scene(twins, (52, 12), dark_warm, 32))
    assert values["same_shape_twice"] == values["same_colour_twice"] == 1.0
    assert values["bright_background"] == 0.0 and values["warm_background"] == 1.0
    assert attribute_values(Scene(objects[:1], (52,), dark_warm, 32))["spread"] == 0.0


def test_forty_attributes_and_every_prefix_mixes_both_kinds() -> None:
    assert len(ATTRIBUTES) == 40 and len({a.name for a in ATTRIBUTES}) == 40
    kinds = [a.kind for a in ATTRIBUTES]
    assert kinds.count("binary") == 30 and kinds.count("regression") == 10
    for t in (4, 16, 40):
        assert {"binary", "regression"} <= set(kinds[:t])


def test_samples_are_deterministic_prefix_stable_and_match_their_scenes() -> None:
    a = render_split("train", 6)
    b = render_split("train", 3)
    for key in a:
        np.testing.assert_array_equal(a[key][:3], b[key])
    assert not np.array_equal(render_split("test", 3)["image"], b["image"])
    for i in range(6):
        rng = np.random.default_rng(np.random.SeedSequence([FAMILY, 1, 0, i]))
        image, scene = render_scene(rng, 32)
        np.testing.assert_array_equal(a["image"][i], image)
        for name, value in attribute_values(scene).items():
            assert a[name][i] == pytest.approx(value, rel=1e-6), (i, name)
    with pytest.raises(ValueError, match="unknown split 'val'"):
        render_split("val", 1)


def test_the_attributes_vary_over_a_split() -> None:
    # A constant attribute would be a task with nothing to learn.
    split = render_split("train", 200)
    for a in ATTRIBUTES:
        assert np.unique(split[a.name]).size >= 2, a.name
        if a.kind == "binary":
            assert 0.1 < split[a.name].mean() < 0.9, a.name


# ------------------------------------------------------------------ benchmarks
def test_t_tasks_are_the_first_t_attributes_with_their_metric_directions() -> None:
    for name, t in (
        ("synthetic-attributes", 40),
        ("synthetic-attributes-16", 16),
        ("synthetic-attributes-4", 4),
        ("synthetic-attributes-mini", 40),
    ):
        benchmark = BENCHMARKS.get(name)
        assert [task.name for task in benchmark.tasks] == [a.name for a in ATTRIBUTES[:t]]
        for task, attribute in zip(benchmark.tasks, ATTRIBUTES, strict=False):
            if attribute.kind == "binary":
                assert isinstance(task, Classification) and task.num_classes == 2
                assert benchmark.metric_directions[task.name] == {
                    "accuracy": True,
                    "balanced_accuracy": True,
                }
            else:
                assert isinstance(task, Regression)
                assert benchmark.metric_directions[task.name] == {"mae": False, "rmse": False}
    with pytest.raises(ValueError, match="num_tasks must be in"):
        attribute_tasks(41)


def test_load_gives_every_tasks_target(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MTLB_DATA_ROOT", str(tmp_path))
    protocol = MINI.protocol(1)
    data = MINI.load("test", protocol)
    assert data["image"].shape == (32, 3, 32, 32) and data["image"].dtype == torch.float32
    expected = render_split("test", 32)
    for task in MINI.tasks:
        dtype = torch.int64 if isinstance(task, Classification) else torch.float32
        assert data[task.name].dtype == dtype and data[task.name].shape == (32,)
        np.testing.assert_array_equal(data[task.name].numpy(), expected[task.name])
    # The 4-task variant reads the same cached file and takes its four targets.
    four = BENCHMARKS.get("synthetic-attributes-4")
    small = four.load("test", protocol)
    assert set(small) == {"image", "has_circle", "has_red", "count", "largest_area"}
    assert torch.equal(small["image"], data["image"])
    assert len(list((tmp_path / "synthetic-attributes" / "v1").glob("*.npz"))) == 1


def test_the_baseline_specs_are_valid() -> None:
    for name in ("synthetic-attributes", "synthetic-attributes-4", "synthetic-attributes-mini"):
        checked, problems = validate(baseline_document(name, 1, "small-cnn"))
        assert problems == [] and checked is not None


# The mini protocol cut to 16 train / 16 test images and one epoch of 2 steps (tests only).
TINY = SyntheticAttributes(
    "test-tiny-attributes",
    "synthetic-attributes-mini with 16 train / 16 test images, batch 8, 1 epoch (tests only).",
    {1: dataclasses.replace(MINI.protocol(1), train_size=16, test_size=16, epochs=1, batch_size=8)},
)


def test_an_exact_gradient_method_and_the_baseline_train_on_40_tasks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A real run of MGDA on 40 tasks and of the baseline; Δm per metric by hand."""
    torch.set_num_threads(1)
    monkeypatch.setitem(BENCHMARKS._entries, TINY.name, TINY)

    def spec(architecture: str, weighting: str) -> dict[str, object]:
        return {
            "benchmark": TINY.name,
            "protocol_version": 1,
            "architecture": {"name": architecture, "backbone": "small-cnn"},
            "weighting": {"name": weighting},
            "optimizer": {"name": "adam", "lr": 1e-3, "weight_decay": 0.0},
        }

    mtl = train(spec("hard-sharing", "mgda"), seed=0)
    stl = train(spec("single-task", "equal"), seed=0).metrics
    assert {c.task for c in mtl.curves if c.name == "weight"} == {t.name for t in MINI.tasks}
    weights = [c.value for c in mtl.curves if c.name == "weight" and c.epoch == 0]
    assert len(weights) == 40 and sum(weights) == pytest.approx(1.0, abs=1e-4)  # MGDA: simplex
    for metrics in (mtl.metrics, stl):
        assert {t: list(m) for t, m in metrics.items()} == {
            t.name: [m.name for m in t.metrics] for t in MINI.tasks
        }
        assert all(math.isfinite(v) for m in metrics.values() for v in m.values())
    directions = MINI.metric_directions
    d = [
        (1 if directions[t][m] else -1) * (mtl.metrics[t][m] - stl[t][m]) / stl[t][m]
        for t in directions
        for m in directions[t]
    ]
    result = delta_m(mtl.metrics, stl, directions)
    assert result.per_metric == pytest.approx(-100 * float(np.mean(d)), rel=1e-9)
