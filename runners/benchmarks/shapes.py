"""Procedural flat-shape images for the ``synthetic-shapes`` benchmark.

Every sample is a small RGB image with one to :data:`MAX_OBJECTS` flat
shapes on a textured, noisy background, rendered in numpy.  Four
image-level labels describe it, all about its objects:

* ``shape``: class of the largest object, an index into :data:`SHAPE_NAMES`;
* ``colour``: colour class of the largest object, an index into
  :data:`COLOUR_NAMES`;
* ``count``: the number of objects (1 to :data:`MAX_OBJECTS`);
* ``size``: the area of the largest object, as a fraction of the image
  (its pixel count / ``size**2``).

So the two classification tasks and ``size`` all hinge on finding the
largest object, and ``count`` on finding every object: the tasks share what
they must learn, which is what makes multi-task learning matter here.

Scene model
-----------
Objects do not touch: their bounding squares are at least one pixel apart
(and one pixel inside the image), so every object's area is its mask's
pixel count and the count is unambiguous.  The largest object's area is at
least :data:`LARGEST_MARGIN` times the second largest's, so ``shape`` and
``colour`` have one right answer that a model can see.

An object is (shape, colour, centre, radius) with radius ``r`` drawn
uniformly from :data:`RADIUS` times the image size.  Its mask, over pixel
centres ``(x, y) = (column + 0.5, row + 0.5)`` and relative to its centre
``(dx, dy)``:

* ``circle``:   ``dx^2 + dy^2 <= r^2``
* ``square``:   ``|dx| <= r and |dy| <= r``
* ``triangle``: apex up, ``-r <= dy <= r and |dx| <= (dy + r) / 2``
* ``plus``:     ``(|dx| <= r and |dy| <= r/3) or (|dy| <= r and |dx| <= r/3)``

Its colour is its class's RGB base (:data:`COLOUR_RGB`) plus a uniform
jitter of +-:data:`COLOUR_JITTER` per channel.  The background mixes two
low-saturation colours along a random direction, plus stripes of random
frequency and orientation (amplitude 12 grey levels); the image then gets
Gaussian per-pixel noise (standard deviation :data:`NOISE_STD` grey levels)
and is rounded to uint8.

Sample ``i`` of a split is a pure function of ``(version, split, i)``; see
:func:`render_split`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "COLOUR_NAMES",
    "MAX_OBJECTS",
    "SHAPE_NAMES",
    "SPLIT_ID",
    "Sample",
    "ShapeObject",
    "draw_objects",
    "labels",
    "object_mask",
    "render_objects",
    "render_sample",
    "render_split",
]

SHAPE_NAMES: tuple[str, ...] = ("circle", "square", "triangle", "plus")
COLOUR_NAMES: tuple[str, ...] = ("red", "green", "blue", "yellow", "magenta")
COLOUR_RGB: tuple[tuple[int, int, int], ...] = (
    (215, 45, 40),
    (45, 190, 60),
    (50, 80, 225),
    (225, 210, 45),
    (205, 55, 205),
)
COLOUR_JITTER = 20
NOISE_STD = 6.0
MAX_OBJECTS = 4
# Radius of an object as a fraction of the image size.
RADIUS = (0.08, 0.2)
LARGEST_MARGIN = 1.25
SPLIT_ID = {"train": 0, "test": 1}
_MAX_TRIES = 200


@dataclass(frozen=True)
class ShapeObject:
    """One flat object: shape and colour class indices, centre (x, y) and radius in pixels."""

    shape: int
    colour: int
    x: float
    y: float
    radius: float


@dataclass(frozen=True)
class Sample:
    image: np.ndarray  # (H, W, 3) uint8
    shape: int
    colour: int
    count: int
    size: float


def object_mask(obj: ShapeObject, size: int) -> np.ndarray:
    """Boolean (size, size) mask of `obj` over pixel centres (see the module docstring)."""
    centres = np.arange(size, dtype=np.float64) + 0.5
    dx = centres[None, :] - obj.x
    dy = centres[:, None] - obj.y
    r = obj.radius
    name = SHAPE_NAMES[obj.shape]
    if name == "circle":
        mask = dx * dx + dy * dy <= r * r
    elif name == "square":
        mask = (np.abs(dx) <= r) & (np.abs(dy) <= r)
    elif name == "triangle":
        mask = (dy >= -r) & (dy <= r) & (np.abs(dx) <= (dy + r) / 2)
    else:  # plus
        arm = r / 3
        mask = ((np.abs(dx) <= r) & (np.abs(dy) <= arm)) | ((np.abs(dy) <= r) & (np.abs(dx) <= arm))
    return np.asarray(mask)


def labels(objects: list[ShapeObject], size: int) -> tuple[int, int, int, float]:
    """(shape, colour, count, size) of a scene: the largest object's classes by mask area."""
    areas = [int(object_mask(o, size).sum()) for o in objects]
    largest = objects[int(np.argmax(areas))]
    return largest.shape, largest.colour, len(objects), max(areas) / size**2


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Two greyish colours blended along a random direction, plus faint stripes (float64)."""
    grey = rng.uniform(70, 170, size=(2, 1))
    tint = rng.uniform(-18, 18, size=(2, 3))
    ends = grey + tint  # (2, 3): low saturation
    angle, stripe_angle = rng.uniform(0, 2 * np.pi, size=2)
    frequency = rng.uniform(0.15, 0.6)
    phase = rng.uniform(0, 2 * np.pi)
    centres = (np.arange(size) + 0.5) / size - 0.5
    x, y = centres[None, :], centres[:, None]
    blend = np.clip(0.5 + np.cos(angle) * x + np.sin(angle) * y, 0, 1)[..., None]
    image = (1 - blend) * ends[0] + blend * ends[1]
    pixels = np.arange(size, dtype=np.float64)
    along = np.cos(stripe_angle) * pixels[None, :] + np.sin(stripe_angle) * pixels[:, None]
    image = image + 12.0 * np.sin(frequency * along + phase)[..., None]
    return np.asarray(image)


def render_objects(
    objects: list[ShapeObject], background: np.ndarray, jitter: np.ndarray | None = None
) -> np.ndarray:
    """Paint `objects` in their class colours, plus `jitter` (n, 3) if given, onto a background.

    `background`: float64 (H, W, 3); returns a new float64 array, later objects on top.
    """
    image = background.copy()
    for i, obj in enumerate(objects):
        colour = np.asarray(COLOUR_RGB[obj.colour], dtype=np.float64)
        image[object_mask(obj, image.shape[0])] = colour if jitter is None else colour + jitter[i]
    return image


def _place(rng: np.random.Generator, count: int, size: int) -> list[ShapeObject] | None:
    """`count` non-touching objects with a clear largest one, or None if none fitted."""
    objects: list[ShapeObject] = []
    for _ in range(_MAX_TRIES):
        if len(objects) == count:
            break
        r = rng.uniform(*RADIUS) * size
        # Bounding square [c - r, c + r] at least one pixel inside the image.
        low, high = r + 1, size - r - 1
        if low >= high:
            continue
        x, y = rng.uniform(low, high, size=2)
        if all(max(abs(x - o.x), abs(y - o.y)) > r + o.radius + 1 for o in objects):
            shape, colour = rng.integers(len(SHAPE_NAMES)), rng.integers(len(COLOUR_NAMES))
            objects.append(ShapeObject(int(shape), int(colour), float(x), float(y), float(r)))
    if len(objects) < count:
        return None
    areas = sorted((int(object_mask(o, size).sum()) for o in objects), reverse=True)
    if areas[-1] == 0 or (len(areas) > 1 and areas[0] < LARGEST_MARGIN * areas[1]):
        return None
    return objects


def draw_objects(rng: np.random.Generator, size: int) -> list[ShapeObject]:
    """The objects of one sample: 1 to MAX_OBJECTS, apart, with a clear largest one."""
    count = int(rng.integers(1, MAX_OBJECTS + 1))
    objects = None
    while objects is None:  # a draw without room or without a clear largest object: redraw
        objects = _place(rng, count, size)
    return objects


def render_sample(rng: np.random.Generator, size: int = 32) -> Sample:
    """One image and its labels, drawn from `rng` (the objects first, see `draw_objects`)."""
    objects = draw_objects(rng, size)
    jitter = rng.uniform(-COLOUR_JITTER, COLOUR_JITTER, size=(len(objects), 3))
    image = render_objects(objects, _background(rng, size), jitter)
    image = image + rng.normal(0.0, NOISE_STD, size=image.shape)
    shape, colour, n, area = labels(objects, size)
    return Sample(np.clip(np.rint(image), 0, 255).astype(np.uint8), shape, colour, n, area)


def render_split(split: str, count: int, size: int = 32, version: int = 1) -> dict[str, np.ndarray]:
    """Render and stack ``count`` samples of a split.

    Returns ``image`` ``(N, H, W, 3)`` uint8, ``shape`` and ``colour``
    ``(N,)`` int64, ``count`` and ``size`` ``(N,)`` float32.

    Sample ``i`` is deterministic from ``(split, i, version)`` alone: its
    generator is ``np.random.default_rng(np.random.SeedSequence([version,
    SPLIT_ID[split], i]))``, so a longer split starts with a shorter one.

    Raises:
        ValueError: for a split not in :data:`SPLIT_ID`, or a negative count.
    """
    if split not in SPLIT_ID:
        raise ValueError(f"unknown split {split!r}; expected one of {sorted(SPLIT_ID)}")
    if count < 0:
        raise ValueError(f"count must be non-negative, got {count}")
    out: dict[str, np.ndarray] = {
        "image": np.empty((count, size, size, 3), dtype=np.uint8),
        "shape": np.empty(count, dtype=np.int64),
        "colour": np.empty(count, dtype=np.int64),
        "count": np.empty(count, dtype=np.float32),
        "size": np.empty(count, dtype=np.float32),
    }
    for i in range(count):
        rng = np.random.default_rng(np.random.SeedSequence([version, SPLIT_ID[split], i]))
        sample = render_sample(rng, size)
        out["image"][i] = sample.image
        out["shape"][i] = sample.shape
        out["colour"][i] = sample.colour
        out["count"][i] = sample.count
        out["size"][i] = sample.size
    return out
