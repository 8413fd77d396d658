"""Procedural images with 40 image-level attributes, for the ``synthetic-attributes`` benchmark.

The embedded stand-in for CelebA's 40 binary attributes (the many-task
setting of MGDA, Sener & Koltun 2018, and FAMO, Liu et al. 2023): the scenes
of ``synthetic-shapes`` (:mod:`runners.benchmarks.shapes`: one to four flat
shapes on a textured, noisy background, objects apart, a clear largest one),
each described by :data:`ATTRIBUTES`, 30 binary and 10 regression
attributes, all exact functions of the scene.  They are ordered so that
every prefix of three or more mixes both kinds: a benchmark with T tasks takes the first T
(4: two binary, two regression; 16: eleven and five; 40: all).

Terms, for a scene of ``size x size`` pixels: an object's *area* is its
mask's pixel count (:func:`runners.benchmarks.shapes.object_mask`); the
*largest* object is the one of largest area; a position is an object's
centre (x, y) in pixels, x to the right and y down; a *quadrant* is
``x < size/2`` or not by ``y < size/2`` or not; the *background* is the
image before the objects and the noise are painted (float, grey levels
0..255).  Fractions are of the image's ``size**2`` pixels.

Sample ``i`` of a split is a pure function of ``(version, split, i)``; see
:func:`render_split`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from itertools import combinations
from typing import Literal

import numpy as np

from runners.benchmarks import shapes
from runners.benchmarks.shapes import COLOUR_NAMES, SHAPE_NAMES, ShapeObject

__all__ = [
    "ATTRIBUTES",
    "Attribute",
    "Scene",
    "attribute_values",
    "render_split",
]

# The seed of sample i is SeedSequence([FAMILY, version, split, i]): not the seeds of
# synthetic-shapes' samples, whose images would otherwise repeat here.
FAMILY = 0x617474
# A background brighter than this mean grey level is `bright_background`: the middle of
# the range of its two end colours' grey (70 to 170, `shapes._background`).
BRIGHT = 120.0


@dataclass(frozen=True)
class Scene:
    """What the attributes are computed from: the objects, their areas, the background."""

    objects: tuple[ShapeObject, ...]
    areas: tuple[int, ...]  # mask pixel counts, in the order of `objects`
    background: np.ndarray  # (size, size, 3) float64, before objects and noise
    size: int

    @property
    def largest(self) -> ShapeObject:
        return self.objects[int(np.argmax(self.areas))]


Kind = Literal["binary", "regression"]


@dataclass(frozen=True)
class Attribute:
    """One attribute: its name (the task's), kind, meaning, and its value on a scene."""

    name: str
    kind: Kind
    description: str
    value: Callable[[Scene], float]


def _has_shape(shape: str) -> Callable[[Scene], float]:
    k = SHAPE_NAMES.index(shape)
    return lambda s: float(any(o.shape == k for o in s.objects))


def _has_colour(colour: str) -> Callable[[Scene], float]:
    k = COLOUR_NAMES.index(colour)
    return lambda s: float(any(o.colour == k for o in s.objects))


def _largest_shape(shape: str) -> Callable[[Scene], float]:
    k = SHAPE_NAMES.index(shape)
    return lambda s: float(s.largest.shape == k)


def _largest_colour(colour: str) -> Callable[[Scene], float]:
    k = COLOUR_NAMES.index(colour)
    return lambda s: float(s.largest.colour == k)


def _in_quadrant(top: bool, left: bool) -> Callable[[Scene], float]:
    def value(s: Scene) -> float:
        half = s.size / 2
        return float(any((o.y < half) == top and (o.x < half) == left for o in s.objects))

    return value


def _spread(s: Scene) -> float:
    pairs = combinations(s.objects, 2)
    return max((float(np.hypot(a.x - b.x, a.y - b.y)) for a, b in pairs), default=0.0) / s.size


def _binary(name: str, description: str, value: Callable[[Scene], float]) -> Attribute:
    return Attribute(name, "binary", description, value)


def _regression(name: str, description: str, value: Callable[[Scene], float]) -> Attribute:
    return Attribute(name, "regression", description, value)


ATTRIBUTES: tuple[Attribute, ...] = (
    _binary("has_circle", "some object is a circle", _has_shape("circle")),
    _binary("has_red", "some object is red", _has_colour("red")),
    _regression("count", "the number of objects (1 to 4)", lambda s: float(len(s.objects))),
    _regression(
        "largest_area", "the largest object's area (fraction)", lambda s: max(s.areas) / s.size**2
    ),
    _binary("has_square", "some object is a square", _has_shape("square")),
    _binary("has_triangle", "some object is a triangle", _has_shape("triangle")),
    _binary("has_plus", "some object is a plus", _has_shape("plus")),
    _binary("has_green", "some object is green", _has_colour("green")),
    _binary("has_blue", "some object is blue", _has_colour("blue")),
    _binary("has_yellow", "some object is yellow", _has_colour("yellow")),
    _binary("has_magenta", "some object is magenta", _has_colour("magenta")),
    _regression(
        "largest_x", "the largest object's centre x / size", lambda s: s.largest.x / s.size
    ),
    _regression(
        "largest_y", "the largest object's centre y / size", lambda s: s.largest.y / s.size
    ),
    _binary("largest_is_circle", "the largest object is a circle", _largest_shape("circle")),
    _binary("largest_is_red", "the largest object is red", _largest_colour("red")),
    _regression(
        "total_area", "the objects' areas summed (fraction)", lambda s: sum(s.areas) / s.size**2
    ),
    _binary("largest_is_square", "the largest object is a square", _largest_shape("square")),
    _binary("largest_is_triangle", "the largest object is a triangle", _largest_shape("triangle")),
    _binary("largest_is_plus", "the largest object is a plus", _largest_shape("plus")),
    _binary("largest_is_green", "the largest object is green", _largest_colour("green")),
    _binary("largest_is_blue", "the largest object is blue", _largest_colour("blue")),
    _binary("largest_is_yellow", "the largest object is yellow", _largest_colour("yellow")),
    _binary("largest_is_magenta", "the largest object is magenta", _largest_colour("magenta")),
    _binary("several", "two or more objects", lambda s: float(len(s.objects) >= 2)),
    _binary("crowded", "three or more objects", lambda s: float(len(s.objects) >= 3)),
    _binary(
        "largest_left",
        "the largest object's centre x < size/2",
        lambda s: float(s.largest.x < s.size / 2),
    ),
    _binary(
        "largest_top",
        "the largest object's centre y < size/2",
        lambda s: float(s.largest.y < s.size / 2),
    ),
    _binary(
        "object_top_left",
        "some object's centre is in the top-left quadrant",
        _in_quadrant(True, True),
    ),
    _binary(
        "object_top_right",
        "some object's centre is in the top-right quadrant",
        _in_quadrant(True, False),
    ),
    _binary(
        "object_bottom_left",
        "some object's centre is in the bottom-left quadrant",
        _in_quadrant(False, True),
    ),
    _binary(
        "object_bottom_right",
        "some object's centre is in the bottom-right quadrant",
        _in_quadrant(False, False),
    ),
    _binary(
        "same_shape_twice",
        "two objects have the same shape",
        lambda s: float(len({o.shape for o in s.objects}) < len(s.objects)),
    ),
    _binary(
        "same_colour_twice",
        "two objects have the same colour",
        lambda s: float(len({o.colour for o in s.objects}) < len(s.objects)),
    ),
    _binary(
        "bright_background",
        f"the background's mean grey level is above {BRIGHT:g}",
        lambda s: float(s.background.mean() > BRIGHT),
    ),
    _regression(
        "shape_kinds",
        "the number of distinct shapes",
        lambda s: float(len({o.shape for o in s.objects})),
    ),
    _regression(
        "colour_kinds",
        "the number of distinct colours",
        lambda s: float(len({o.colour for o in s.objects})),
    ),
    _regression(
        "background_level",
        "the background's mean grey level / 255",
        lambda s: float(s.background.mean()) / 255,
    ),
    _regression(
        "smallest_area", "the smallest object's area (fraction)", lambda s: min(s.areas) / s.size**2
    ),
    _regression("spread", "the largest distance between centres / size (0: one object)", _spread),
    _binary(
        "warm_background",
        "the background's mean red is above its mean blue",
        lambda s: float(s.background[..., 0].mean() > s.background[..., 2].mean()),
    ),
)
"""The attributes in task order (a benchmark with T tasks takes the first T)."""


def attribute_values(scene: Scene) -> dict[str, float]:
    """{attribute: value} of one scene; binary values are 0.0 or 1.0."""
    return {a.name: float(a.value(scene)) for a in ATTRIBUTES}


def render_scene(rng: np.random.Generator, size: int) -> tuple[np.ndarray, Scene]:
    """One uint8 (size, size, 3) image and its scene, drawn as `shapes.render_sample` draws."""
    objects = shapes.draw_objects(rng, size)
    jitter = rng.uniform(-shapes.COLOUR_JITTER, shapes.COLOUR_JITTER, size=(len(objects), 3))
    background = shapes._background(rng, size)
    image = shapes.render_objects(objects, background, jitter)
    image = image + rng.normal(0.0, shapes.NOISE_STD, size=image.shape)
    areas = tuple(int(shapes.object_mask(o, size).sum()) for o in objects)
    scene = Scene(tuple(objects), areas, background, size)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8), scene


def render_split(split: str, count: int, size: int = 32, version: int = 1) -> dict[str, np.ndarray]:
    """Render ``count`` samples of a split: ``image`` (N, H, W, 3) uint8 and every attribute.

    Binary attributes are int64 (0 or 1), regression attributes float32, each (N,).
    Sample ``i`` is deterministic from ``(split, i, version)`` alone: its
    generator is ``np.random.default_rng(np.random.SeedSequence([FAMILY,
    version, SPLIT_ID[split], i]))``, so a longer split starts with a shorter one.

    Raises:
        ValueError: for a split not in ``shapes.SPLIT_ID``, or a negative count.
    """
    if split not in shapes.SPLIT_ID:
        raise ValueError(f"unknown split {split!r}; expected one of {sorted(shapes.SPLIT_ID)}")
    if count < 0:
        raise ValueError(f"count must be non-negative, got {count}")
    out: dict[str, np.ndarray] = {"image": np.empty((count, size, size, 3), dtype=np.uint8)}
    for a in ATTRIBUTES:
        out[a.name] = np.empty(count, dtype=np.int64 if a.kind == "binary" else np.float32)
    for i in range(count):
        seed = np.random.SeedSequence([FAMILY, version, shapes.SPLIT_ID[split], i])
        image, scene = render_scene(np.random.default_rng(seed), size)
        out["image"][i] = image
        for name, value in attribute_values(scene).items():
            out[name][i] = value
    return out
