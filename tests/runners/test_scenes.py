"""Tests for the procedural ray-cast scenes (runners.benchmarks.scenes).

The geometric tests reconstruct 3-D points from the depth map with the
documented pinhole intrinsics and check them against the normal map, so they
exercise the ray caster, the depth convention and the normal convention
together rather than restating the implementation.
"""

from __future__ import annotations

import numpy as np
import pytest

from runners.benchmarks.scenes import (
    CLASS_NAMES,
    SPLIT_ID,
    Scene,
    focal_length,
    render_scene,
    render_split,
)

FLOOR = CLASS_NAMES.index("floor")
WALL = CLASS_NAMES.index("wall")
CEILING = CLASS_NAMES.index("ceiling")
OBJECTS = tuple(CLASS_NAMES.index(name) for name in ("box", "sphere", "cylinder"))


@pytest.fixture(scope="module")
def train64() -> dict[str, np.ndarray]:
    return render_split("train", 64)


def camera_rays(size: int) -> np.ndarray:
    """(H, W, 3) camera-frame rays with z = 1 through the pixel centres."""
    f = focal_length(size)
    c = (np.arange(size) + 0.5 - size / 2) / f
    rays = np.ones((size, size, 3))
    rays[..., 0] = c[None, :]
    rays[..., 1] = c[:, None]
    return rays


def backproject(depth: np.ndarray) -> np.ndarray:
    """(H, W, 3) camera-frame points of a z-depth map."""
    return camera_rays(depth.shape[0]) * depth.astype(np.float64)[..., None]


def assert_planar(points: np.ndarray, normal: np.ndarray) -> None:
    """`points` (M, 3) lie on one plane whose normal is `normal`."""
    centred = points - points.mean(axis=0)
    # Against the ground-truth normal ...
    assert np.abs(centred @ normal).max() < 1e-3
    # ... and the best-fit plane agrees with it.
    fitted = np.linalg.svd(centred, full_matrices=False)[2][-1]
    assert abs(fitted @ normal) > 1 - 1e-6


# --- determinism --------------------------------------------------------------


def test_render_split_is_deterministic_and_prefix_stable() -> None:
    a = render_split("train", 3)
    b = render_split("train", 3)
    longer = render_split("train", 6)
    assert set(a) == {"image", "segmentation", "depth", "normal"}
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
        np.testing.assert_array_equal(a[key], longer[key][:3])
    # Different samples of one split differ.
    assert not np.array_equal(longer["image"][0], longer["image"][1])


def test_sample_seed_is_version_split_index() -> None:
    split = render_split("val", 5, size=32, version=3)
    rng = np.random.default_rng(np.random.SeedSequence([3, SPLIT_ID["val"], 4]))
    scene = render_scene(rng, size=32)
    assert isinstance(scene, Scene)
    np.testing.assert_array_equal(split["image"][4], scene.image)
    np.testing.assert_array_equal(split["segmentation"][4], scene.segmentation)
    np.testing.assert_array_equal(split["depth"][4], scene.depth)
    np.testing.assert_array_equal(split["normal"][4], scene.normal)


def test_version_and_split_change_the_scenes() -> None:
    base = render_split("train", 4)["image"]
    for other in (
        render_split("train", 4, version=2)["image"],
        render_split("test", 4)["image"],
        render_split("val", 4)["image"],
    ):
        for k in range(4):
            assert not np.array_equal(base[k], other[k])


def test_unknown_split_raises() -> None:
    with pytest.raises(ValueError, match="bogus"):
        render_split("bogus", 2)


def test_empty_split() -> None:
    out = render_split("test", 0, size=16)
    assert out["image"].shape == (0, 16, 16, 3)
    assert out["normal"].shape == (0, 16, 16, 3)


# --- arrays -------------------------------------------------------------------


@pytest.mark.parametrize("size", [24, 64])
def test_dtypes_shapes_and_ranges(size: int) -> None:
    n = 6
    out = render_split("test", n, size=size)
    assert out["image"].shape == (n, size, size, 3) and out["image"].dtype == np.uint8
    assert out["segmentation"].shape == (n, size, size)
    assert out["segmentation"].dtype == np.uint8
    assert out["depth"].shape == (n, size, size) and out["depth"].dtype == np.float32
    assert out["normal"].shape == (n, size, size, 3) and out["normal"].dtype == np.float32

    assert out["segmentation"].max() < len(CLASS_NAMES)
    depth = out["depth"]
    assert np.isfinite(depth).all() and (depth > 0).all()
    assert depth.max() < 50.0  # a room, not infinity
    normal = out["normal"].astype(np.float64)
    assert np.isfinite(normal).all()
    np.testing.assert_allclose(np.linalg.norm(normal, axis=-1), 1.0, atol=1e-5)
    # Images are not flat.
    assert all(out["image"][k].std() > 5 for k in range(n))


def test_normals_face_the_camera(train64: dict[str, np.ndarray]) -> None:
    rays = camera_rays(64)
    facing = np.einsum("nhwc,hwc->nhw", train64["normal"].astype(np.float64), rays)
    assert (facing < 0).all()


# --- exact geometry -------------------------------------------------------------


def test_floor_walls_and_ceiling_are_planes(train64: dict[str, np.ndarray]) -> None:
    checked = {"floor": 0, "wall": 0, "ceiling": 0}
    for k in range(16):
        seg = train64["segmentation"][k]
        normal = train64["normal"][k].astype(np.float64)
        points = backproject(train64["depth"][k])

        floor = seg == FLOOR
        assert floor.sum() >= 50  # the camera always looks down at the floor
        floor_normals = normal[floor]
        up = floor_normals[0]
        # One normal for the whole floor: the camera-frame up vector of an
        # unrolled camera, i.e. no x component and pointing to -y (y is down).
        np.testing.assert_allclose(
            floor_normals, np.broadcast_to(up, floor_normals.shape), atol=1e-5
        )
        assert abs(up[0]) < 1e-6 and up[1] < -0.5
        assert_planar(points[floor], up)
        # The camera is above the floor: the plane n.p = -height has height > 0.
        floor_offset = -(points[floor] @ up).mean()
        assert 0.5 < floor_offset < 3.0
        checked["floor"] += 1

        ceiling = seg == CEILING
        if ceiling.sum() >= 20:
            np.testing.assert_allclose(
                normal[ceiling], np.broadcast_to(-up, (ceiling.sum(), 3)), atol=1e-5
            )
            assert_planar(points[ceiling], -up)
            ceiling_offset = (points[ceiling] @ up).mean()
            assert ceiling_offset > 0.3  # ceiling above the camera
            checked["ceiling"] += 1

        # Walls: several planes; group pixels by their (exactly shared) normal.
        wall_normals = normal[seg == WALL]
        wall_points = points[seg == WALL]
        keys, inverse = np.unique(np.round(wall_normals, 4), axis=0, return_inverse=True)
        assert len(keys) <= 4
        for g in range(len(keys)):
            members = inverse.ravel() == g
            if members.sum() < 20:
                continue
            wall_n = wall_normals[members]
            np.testing.assert_allclose(wall_n, np.broadcast_to(wall_n[0], wall_n.shape), atol=1e-5)
            assert abs(wall_n[0] @ up) < 1e-5  # walls are vertical
            assert_planar(wall_points[members], wall_n[0])
            checked["wall"] += 1
    assert checked["floor"] == 16 and checked["wall"] >= 16 and checked["ceiling"] >= 3


def test_object_normals_match_depth_gradients() -> None:
    """Normals estimated from back-projected depth by central differences agree
    with the ground-truth normals on the smooth interior of every object class
    (box faces, sphere, cylinder side and cap)."""
    size = 128
    out = render_split("test", 12, size=size)
    errors: dict[int, list[np.ndarray]] = {c: [] for c in OBJECTS}
    for k in range(len(out["depth"])):
        seg = out["segmentation"][k]
        normal = out["normal"][k].astype(np.float64)
        p = backproject(out["depth"][k])
        du = p[1:-1, 2:] - p[1:-1, :-2]
        dv = p[2:, 1:-1] - p[:-2, 1:-1]
        estimate = np.cross(du, dv)
        estimate /= np.linalg.norm(estimate, axis=-1, keepdims=True)
        centre = normal[1:-1, 1:-1]
        # Interior pixels: the 4 neighbours have the same class and nearly the
        # same normal (so no silhouettes or box edges in the stencil).
        smooth = np.ones_like(seg[1:-1, 1:-1], dtype=bool)
        for dy, dx in ((0, 1), (0, -1), (1, 0), (-1, 0)):
            ys = slice(1 + dy, size - 1 + dy)
            xs = slice(1 + dx, size - 1 + dx)
            smooth &= seg[ys, xs] == seg[1:-1, 1:-1]
            smooth &= np.einsum("hwc,hwc->hw", normal[ys, xs], centre) > 0.98
        cos = np.abs(np.einsum("hwc,hwc->hw", estimate, centre))
        angle = np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))
        for c in OBJECTS:
            errors[c].append(angle[smooth & (seg[1:-1, 1:-1] == c)])
    for c in OBJECTS:
        err = np.concatenate(errors[c])
        assert err.size > 200, CLASS_NAMES[c]
        assert np.median(err) < 0.5, CLASS_NAMES[c]
        assert np.quantile(err, 0.95) < 3.0, CLASS_NAMES[c]


# --- content ------------------------------------------------------------------


def test_class_coverage(train64: dict[str, np.ndarray]) -> None:
    counts = np.bincount(train64["segmentation"].ravel(), minlength=len(CLASS_NAMES))
    assert len(counts) == len(CLASS_NAMES)
    shares = counts / counts.sum()
    assert (shares >= 0.01).all(), dict(zip(CLASS_NAMES, shares.round(4), strict=True))


def test_colour_does_not_identify_class(train64: dict[str, np.ndarray]) -> None:
    """Per-scene mean colours of a class vary widely across scenes, and object
    classes overlap in colour."""
    means: dict[int, list[np.ndarray]] = {c: [] for c in range(len(CLASS_NAMES))}
    for img, seg in zip(train64["image"], train64["segmentation"], strict=True):
        for c in range(len(CLASS_NAMES)):
            mask = seg == c
            if mask.sum() >= 10:
                means[c].append(img[mask].astype(np.float64).mean(axis=0))
    for c, values in means.items():
        spread = np.asarray(values).std(axis=0)
        assert (spread > 20).all(), CLASS_NAMES[c]
