"""The synthetic-shapes benchmark: its renderer's labels, determinism, protocol and a real run."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from db.delta_m import delta_m
from runners.benchmarks import BENCHMARKS
from runners.benchmarks import shapes as shapes_module
from runners.benchmarks.shapes import (
    COLOUR_NAMES,
    COLOUR_RGB,
    MAX_OBJECTS,
    SHAPE_NAMES,
    ShapeObject,
    draw_objects,
    labels,
    object_mask,
    render_objects,
    render_split,
)
from runners.train import train
from submissions.cli import app
from submissions.spec import validate
from submissions.submit import baseline_document

MINI = BENCHMARKS.get("synthetic-shapes-mini")
CIRCLE, SQUARE, TRIANGLE, PLUS = (
    SHAPE_NAMES.index(n) for n in ("circle", "square", "triangle", "plus")
)
RED, GREEN, BLUE = (COLOUR_NAMES.index(n) for n in ("red", "green", "blue"))


def spec(architecture: str, benchmark: str = MINI.name) -> dict[str, object]:
    return {
        "benchmark": benchmark,
        "protocol_version": 1,
        "architecture": {"name": architecture, "backbone": "small-cnn"},
        "weighting": {"name": "equal"},
        "optimizer": {"name": "adam", "lr": 1e-3, "weight_decay": 0.0},
    }


# ------------------------------------------------------------------------ renderer
@pytest.mark.parametrize(
    ("shape", "radius", "pixels"),
    [
        # Pixel centres at offsets +-0.5 .. +-3.5 from the centre (16, 16), counted by hand:
        (SQUARE, 4.0, 64),  # |dx|, |dy| <= 4: 8 x 8
        (CIRCLE, 4.0, 52),  # per |dx| = 0.5, 1.5, 2.5, 3.5: 8, 8, 6, 4 values of dy; x2
        (TRIANGLE, 3.0, 18),  # rows dy = -2.5 .. 2.5 hold 0, 2, 2, 4, 4, 6 pixels
        (PLUS, 3.0, 20),  # two 6 x 2 bars sharing a 2 x 2 square: 12 + 12 - 4
    ],
)
def test_one_known_shape_has_the_right_labels(shape: int, radius: float, pixels: int) -> None:
    obj = ShapeObject(shape, BLUE, 16.0, 16.0, radius)
    assert int(object_mask(obj, 32).sum()) == pixels
    assert labels([obj], 32) == (shape, BLUE, 1, pixels / 1024)


def test_the_largest_object_gives_shape_colour_and_size() -> None:
    circle = ShapeObject(CIRCLE, BLUE, 8.0, 8.0, 4.0)  # 52 pixels
    square = ShapeObject(SQUARE, GREEN, 24.0, 24.0, 2.0)  # 16 pixels
    plus = ShapeObject(PLUS, RED, 24.0, 8.0, 3.0)  # 20 pixels
    assert labels([square, circle, plus], 32) == (CIRCLE, BLUE, 3, 52 / 1024)
    image = render_objects([square, circle, plus], np.full((32, 32, 3), 128.0))
    assert tuple(image[8, 8]) == COLOUR_RGB[BLUE]  # the circle's centre pixel
    assert tuple(image[24, 24]) == COLOUR_RGB[GREEN]
    assert tuple(image[0, 0]) == (128.0, 128.0, 128.0)
    # Painted pixels: exactly the three masks (52 + 16 + 20), nothing else.
    assert int((image != 128.0).any(axis=2).sum()) == 88


def test_samples_are_deterministic_and_prefix_stable() -> None:
    a = render_split("train", 6)
    b = render_split("train", 3)
    for key in a:
        np.testing.assert_array_equal(a[key][:3], b[key])
    np.testing.assert_array_equal(render_split("train", 6)["image"], a["image"])
    assert not np.array_equal(render_split("test", 6)["image"], a["image"])
    assert not np.array_equal(render_split("train", 6, version=2)["image"], a["image"])
    with pytest.raises(ValueError, match="unknown split 'val'"):
        render_split("val", 1)


def test_rendered_labels_agree_with_the_pixels() -> None:
    """For each sample, find the largest object's pixels by colour alone and re-measure it.

    A pixel of an object differs from its class colour by the object's jitter (<= 20)
    plus noise (sd 6); the low-saturation background cannot come that close to a
    saturated class colour, so `max |pixel - class colour| <= 44` in the object's
    bounding square selects its pixels (to a 4-sigma noise tail).
    """
    n = 40
    split = render_split("train", n)
    seen_counts = set()
    for i in range(n):
        rng = np.random.default_rng(np.random.SeedSequence([1, 0, i]))
        objects = draw_objects(rng, 32)  # the first draws of sample i, as render_sample makes
        areas = [int(object_mask(o, 32).sum()) for o in objects]
        largest = objects[int(np.argmax(areas))]
        assert (split["shape"][i], split["colour"][i]) == (largest.shape, largest.colour)
        assert split["count"][i] == len(objects) and 1 <= len(objects) <= MAX_OBJECTS
        seen_counts.add(len(objects))
        # Apart: bounding squares at least one pixel apart; a clear largest object.
        for j, o in enumerate(objects):
            for p in objects[j + 1 :]:
                assert max(abs(o.x - p.x), abs(o.y - p.y)) > o.radius + p.radius + 1
        assert sorted(areas)[-1] >= 1.25 * (sorted(areas)[-2] if len(areas) > 1 else 0)
        # Re-measure the largest object from the image.
        lo_x, hi_x = math.floor(largest.x - largest.radius), math.ceil(largest.x + largest.radius)
        lo_y, hi_y = math.floor(largest.y - largest.radius), math.ceil(largest.y + largest.radius)
        window = split["image"][i, lo_y:hi_y, lo_x:hi_x].astype(np.float64)
        close = np.abs(window - np.asarray(COLOUR_RGB[largest.colour])).max(axis=2) <= 44
        assert abs(int(close.sum()) - split["size"][i] * 1024) <= 2, i
        # Its colour is nearer its class than any other class.
        mean = window[close].mean(axis=0)
        nearest = np.argmin([np.abs(mean - np.asarray(c)).sum() for c in COLOUR_RGB])
        assert nearest == largest.colour
    assert seen_counts == set(range(1, MAX_OBJECTS + 1))


def test_load_gives_the_tasks_targets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MTLB_DATA_ROOT", str(tmp_path))
    protocol = MINI.protocol(1)
    data = MINI.load("test", protocol)
    n = protocol.test_size
    assert data["image"].shape == (n, 3, 32, 32) and data["image"].dtype == torch.float32
    assert float(data["image"].min()) >= -0.5 and float(data["image"].max()) <= 0.5
    assert data["shape"].dtype == data["colour"].dtype == torch.int64
    assert data["count"].shape == data["size"].shape == (n,)
    assert int(data["shape"].max()) < len(SHAPE_NAMES)
    assert int(data["colour"].max()) < len(COLOUR_NAMES)
    # Cached on disk under the data root; a second load reads the same bytes.
    assert list((tmp_path / "synthetic-shapes" / "v1").glob("test-32px-32.npz"))
    again = MINI.load("test", protocol)
    assert all(torch.equal(data[k], again[k]) for k in data)
    expected = render_split("test", n)
    np.testing.assert_array_equal(data["size"].numpy(), expected["size"])


# ----------------------------------------------------------------- protocol and run
def test_tasks_and_metric_directions() -> None:
    for name in ("synthetic-shapes", "synthetic-shapes-mini"):
        assert BENCHMARKS.get(name).metric_directions == {
            "shape": {"accuracy": True, "balanced_accuracy": True},
            "colour": {"accuracy": True, "balanced_accuracy": True},
            "count": {"mae": False, "rmse": False},
            "size": {"mae": False, "rmse": False},
        }


def test_the_baseline_spec_is_valid() -> None:
    for name in ("synthetic-shapes", "synthetic-shapes-mini"):
        document = baseline_document(name, 1, "small-cnn")
        checked, problems = validate(document)
        assert problems == [] and checked is not None


def test_mtlb_baselines_queues_the_single_task_baseline(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shapes.sqlite'}"
    result = CliRunner().invoke(app, ["--database", url, "baselines", "synthetic-shapes"])
    assert result.exit_code == 0, result.output
    assert "stl-small-cnn: 3 job(s) queued" in result.output


def test_hard_sharing_and_baseline_train_on_the_mini_protocol() -> None:
    """A real run of each: finite metrics with the tasks' names; Δm by hand from them."""
    torch.set_num_threads(1)
    mtl = train(spec("hard-sharing"), seed=0).metrics
    stl = train(spec("single-task"), seed=0).metrics
    for metrics in (mtl, stl):
        assert {t: list(m) for t, m in metrics.items()} == {
            t.name: [m.name for m in t.metrics] for t in MINI.tasks
        }
        assert all(math.isfinite(v) for m in metrics.values() for v in m.values())
        assert all(0 <= metrics[t]["accuracy"] <= 1 for t in ("shape", "colour"))
        assert all(0 <= metrics[t]["mae"] <= metrics[t]["rmse"] for t in ("count", "size"))
    # Regression errors are lower-is-better: their relative change enters with a minus sign.
    d = {
        (t, m): (1 if m in ("accuracy", "balanced_accuracy") else -1)
        * (mtl[t][m] - stl[t][m])
        / stl[t][m]
        for t in mtl
        for m in mtl[t]
    }
    per_task = 100 * np.mean([np.mean([d[t, m] for m in mtl[t]]) for t in mtl])
    result = delta_m(mtl, stl, MINI.metric_directions)
    assert result.per_task == pytest.approx(per_task, rel=1e-12)
    assert result.per_metric == pytest.approx(-100 * np.mean(list(d.values())), rel=1e-12)


def test_every_class_is_documented() -> None:
    # The docstring is the dataset's documentation: it lists every shape and colour class.
    doc = shapes_module.__doc__ or ""
    assert all(f"``{name}``" in doc for name in SHAPE_NAMES)
    assert len(COLOUR_RGB) == len(COLOUR_NAMES)
