"""Procedural ray-cast scenes for the ``synthetic-scenes`` benchmark.

Every sample is a small 3-D room seen through a pinhole camera, rendered by a
fully vectorised numpy ray caster (one ray per pixel, no per-pixel Python
loops).  Each sample comes with exact ground truth for three dense tasks:
semantic segmentation, depth and surface normals.

Scene model
-----------
World frame (right-handed, metres): ``X`` across the room, ``Y`` along the
room (away from the entrance), ``Z`` up.  The room is the axis-aligned box
``[-width/2, width/2] x [0, length] x [0, height]`` seen from the inside:
the floor ``Z = 0``, the ceiling ``Z = height`` and four walls (all labelled
``wall``).  The room is closed, so every ray hits something.

Between two and five primitives stand on the floor, in front of the camera:

* boxes, rotated by a random angle about the vertical axis;
* spheres resting on the floor;
* upright cylinders with a flat top cap (the bottom cap lies on the floor).

They may overlap and occlude each other; the nearest hit wins per pixel.

Every surface (each wall, floor, ceiling and each primitive) draws its base
colour from the same distribution, so the class cannot be read from colour
alone.  The floor carries a faint checker pattern and the walls faint
vertical stripes.  Shading is Lambertian with one random directional light
plus ambient (no shadows), followed by a little uniform per-pixel noise
(standard deviation 2 grey levels) and rounding to uint8.

Camera conventions
------------------
The camera sits inside the room with a random position, height, yaw (about
the world vertical) and pitch (nose down/up), and no roll.  Ranges: room
4-7 m wide, 6-10 m long, 2.5-3.5 m high; camera 1.0-1.9 m above the floor,
0.3-1.0 m from the entrance wall, yaw within +-25 degrees of the room axis,
pitch from 30 degrees down to 2 degrees up; primitives 1-5 m ahead.  Camera
coordinates follow the OpenCV convention: ``x`` right, ``y`` down, ``z``
forward along the optical axis (right-handed).  The intrinsics are fixed for a
given image ``size`` (square images): horizontal and vertical field of view
:data:`FOV_DEGREES`, focal length :func:`focal_length` in pixels and principal
point ``(size / 2, size / 2)``, with pixel ``(row v, column u)`` sampled at
its centre.  A pixel with depth ``d`` therefore back-projects to the camera
frame point::

    X = (u + 0.5 - size / 2) / f * d
    Y = (v + 0.5 - size / 2) / f * d
    Z = d

Ground truth
------------
* ``segmentation``: index into :data:`CLASS_NAMES`.
* ``depth``: z-depth (distance along the optical axis, not along the ray) of
  the hit point, in metres.
* ``normal``: analytic unit normal of the hit surface, expressed in camera
  coordinates and oriented to face the camera (``dot(normal, ray) < 0``).

Sample ``i`` of a split is a pure function of ``(version, split, i)``; see
:func:`render_split`.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "CLASS_NAMES",
    "FOV_DEGREES",
    "SPLIT_ID",
    "Scene",
    "focal_length",
    "render_scene",
    "render_split",
]

CLASS_NAMES: tuple[str, ...] = ("floor", "wall", "ceiling", "box", "sphere", "cylinder")
"""Segmentation classes; the index of a name is its label."""

FOV_DEGREES: float = 60.0
"""Horizontal (and, images being square, vertical) field of view."""

SPLIT_ID: dict[str, int] = {"train": 0, "test": 1, "val": 2}
"""Split name -> entropy word mixed into each sample's seed."""

_FLOOR, _WALL, _CEILING, _BOX, _SPHERE, _CYLINDER = range(6)

# Scene parameter ranges (metres / degrees).
_ROOM_WIDTH = (4.0, 7.0)
_ROOM_LENGTH = (6.0, 10.0)
_ROOM_HEIGHT = (2.5, 3.5)
_CAM_HEIGHT = (1.0, 1.9)
_CAM_Y = (0.3, 1.0)
_CAM_YAW_DEG = (-25.0, 25.0)
_CAM_PITCH_DEG = (-30.0, 2.0)
_NUM_OBJECTS = (2, 5)
_NOISE_STD = 2.0  # grey levels
_PLACEMENT_TRIES = 8


@dataclass(frozen=True)
class Scene:
    """One rendered sample.

    Attributes:
        image: ``(H, W, 3)`` uint8 RGB image.
        segmentation: ``(H, W)`` uint8 labels in ``[0, len(CLASS_NAMES))``.
        depth: ``(H, W)`` float32 z-depth in metres (positive, finite).
        normal: ``(H, W, 3)`` float32 unit normals in camera coordinates
            (x right, y down, z forward), facing the camera.
    """

    image: np.ndarray
    segmentation: np.ndarray
    depth: np.ndarray
    normal: np.ndarray


def focal_length(size: int) -> float:
    """Focal length in pixels of the camera for a ``size x size`` image."""
    return (size / 2.0) / math.tan(math.radians(FOV_DEGREES) / 2.0)


@functools.lru_cache(maxsize=8)
def _camera_rays(size: int) -> np.ndarray:
    """Camera-frame ray directions as a ``(3, size*size)`` array, row-major
    over pixels, with unit z component.

    Because the z component is 1, the ray parameter of a hit equals its
    z-depth.  The returned array is read-only (it is cached).
    """
    f = focal_length(size)
    coords = (np.arange(size, dtype=np.float64) + 0.5 - size / 2.0) / f
    grid = np.empty((3, size, size), dtype=np.float64)
    grid[0] = coords[None, :]
    grid[1] = coords[:, None]
    grid[2] = 1.0
    rays: np.ndarray = grid.reshape(3, -1)
    rays.flags.writeable = False
    return rays


def _camera_to_world(yaw: float, pitch: float) -> np.ndarray:
    """Rotation whose columns are the camera x (right), y (down) and z
    (forward) axes in world coordinates; ``yaw`` > 0 turns right (towards
    +X), ``pitch`` > 0 looks up."""
    cy, sy = math.cos(yaw), math.sin(yaw)
    cp, sp = math.cos(pitch), math.sin(pitch)
    right = (cy, -sy, 0.0)
    down = (sy * sp, cy * sp, -cp)
    forward = (sy * cp, cy * cp, sp)
    return np.array([right, down, forward], dtype=np.float64).T


# Room faces, indexed by ``2 * axis + (ray direction along axis > 0)``:
# walls X = lo / X = hi, entrance wall Y = 0, back wall Y = length, floor,
# ceiling.  Normals point into the room.
_ROOM_FACE_LABELS = (_WALL, _WALL, _WALL, _WALL, _FLOOR, _CEILING)
_ROOM_FACE_NORMALS = np.array(
    [
        [1.0, 0.0, 0.0],
        [-1.0, 0.0, 0.0],
        [0.0, 1.0, 0.0],
        [0.0, -1.0, 0.0],
        [0.0, 0.0, 1.0],
        [0.0, 0.0, -1.0],
    ]
)
_ROOM_FACE_NORMALS.flags.writeable = False
_FLOOR_FACE = 4


def _hit_room(
    origin: np.ndarray, dirs: np.ndarray, lo: np.ndarray, hi: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Exit of rays ``(3, N)`` starting at ``origin`` inside the box
    ``[lo, hi]``: returns the ray parameter and the face index."""
    positive = dirs > 0
    ts = []
    for k in range(3):
        # Distance to the plane ahead along axis k; +inf for a zero component.
        ahead = np.where(positive[k], hi[k] - origin[k], origin[k] - lo[k])
        ts.append(ahead / np.abs(dirs[k]))
    t = np.minimum(np.minimum(ts[0], ts[1]), ts[2])
    face = np.where(
        ts[0] == t,
        positive[0],
        np.where(ts[1] == t, 2 + positive[1], 4 + positive[2]),
    )
    return t, face


def _bounding_candidates(
    origin: np.ndarray, dirs: np.ndarray, dd: np.ndarray, center: np.ndarray, radius: float
) -> np.ndarray:
    """Indices of the rays whose line meets the sphere ``(center, radius)``."""
    oc = origin - center
    b = oc @ dirs
    disc = b * b - dd * (oc @ oc - radius * radius)
    return np.flatnonzero((disc > 0) & (b < 0))


def _hit_sphere(
    origin: np.ndarray, dirs: np.ndarray, center: np.ndarray, radius: float
) -> tuple[np.ndarray, np.ndarray]:
    """Nearest positive hit of rays ``(3, M)`` with a sphere that does not
    contain ``origin``; returns ``t`` (inf where missed) and world normals
    ``(3, M)``."""
    oc = origin - center
    dd = np.einsum("ij,ij->j", dirs, dirs)
    b = oc @ dirs
    disc = b * b - dd * (oc @ oc - radius * radius)
    t = (-b - np.sqrt(np.maximum(disc, 0.0))) / dd
    t = np.where((disc > 0) & (t > 0), t, np.inf)
    with np.errstate(invalid="ignore"):
        normal = oc[:, None] + t * dirs
        normal /= np.linalg.norm(normal, axis=0)
    return t, normal


def _hit_box(
    origin: np.ndarray, dirs: np.ndarray, center: np.ndarray, half: np.ndarray, angle: float
) -> tuple[np.ndarray, np.ndarray]:
    """Nearest positive hit of rays ``(3, M)`` with a box of half extents
    ``half`` rotated by ``angle`` about the vertical axis through ``center``
    (``origin`` outside); returns ``t`` (inf where missed) and world normals."""
    c, s = math.cos(angle), math.sin(angle)
    # Columns: the box's local axes in world coordinates.
    rot = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    o_local = rot.T @ (origin - center)
    d_local = rot.T @ dirs
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / d_local
        t1 = (-half - o_local)[:, None] * inv
        t2 = (half - o_local)[:, None] * inv
    t_near = np.minimum(t1, t2)
    t_far = np.maximum(t1, t2)
    axis = np.argmax(t_near, axis=0)
    cols = np.arange(dirs.shape[1])
    t_enter = t_near[axis, cols]
    t_exit = t_far.min(axis=0)
    t = np.where((t_enter <= t_exit) & (t_enter > 0), t_enter, np.inf)
    n_local = np.zeros_like(dirs)
    n_local[axis, cols] = np.where(d_local[axis, cols] > 0, -1.0, 1.0)
    return t, rot @ n_local


def _hit_cylinder(
    origin: np.ndarray, dirs: np.ndarray, base: np.ndarray, radius: float, height: float
) -> tuple[np.ndarray, np.ndarray]:
    """Nearest positive hit of rays ``(3, M)`` with an upright cylinder whose
    bottom cap is centred at ``base`` (on the floor, so only the side and the
    top cap can be seen); ``origin`` outside.  Returns ``t`` (inf where
    missed) and world normals."""
    ox, oy, oz = origin - base
    dx, dy, dz = dirs
    a = dx * dx + dy * dy
    b = dx * ox + dy * oy
    disc = b * b - a * (ox * ox + oy * oy - radius * radius)
    with np.errstate(divide="ignore", invalid="ignore"):
        t_side = (-b - np.sqrt(np.maximum(disc, 0.0))) / a
        z_side = oz + t_side * dz
        side_ok = (disc > 0) & (t_side > 0) & (z_side >= 0) & (z_side <= height)
        t_cap = (height - oz) / dz
        px = ox + t_cap * dx
        py = oy + t_cap * dy
        cap_ok = (t_cap > 0) & (px * px + py * py <= radius * radius)
    t_side = np.where(side_ok, t_side, np.inf)
    t_cap = np.where(cap_ok, t_cap, np.inf)
    on_cap = t_cap < t_side
    t = np.where(on_cap, t_cap, t_side)
    normal = np.zeros_like(dirs)
    side = np.flatnonzero(~on_cap & side_ok)
    nx = ox + t[side] * dx[side]
    ny = oy + t[side] * dy[side]
    norm = np.hypot(nx, ny)
    normal[0, side] = nx / norm
    normal[1, side] = ny / norm
    normal[2, on_cap] = 1.0
    return t, normal


def _uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return float(rng.uniform(bounds[0], bounds[1]))


def render_scene(rng: np.random.Generator, size: int = 64) -> Scene:
    """Render one random scene of ``size x size`` pixels.

    The result is a pure function of the state of ``rng`` and ``size``
    (which only sets the resolution: the same ``rng`` state gives the same
    3-D scene at every size).
    """
    if size < 1:
        raise ValueError(f"size must be positive, got {size}")

    # --- room and camera ---------------------------------------------------
    width = _uniform(rng, _ROOM_WIDTH)
    length = _uniform(rng, _ROOM_LENGTH)
    height = _uniform(rng, _ROOM_HEIGHT)
    lo = np.array([-width / 2, 0.0, 0.0])
    hi = np.array([width / 2, length, height])
    cam_x = float(rng.uniform(-0.25, 0.25)) * width
    cam_y = _uniform(rng, _CAM_Y)
    cam_z = _uniform(rng, _CAM_HEIGHT)
    yaw = math.radians(_uniform(rng, _CAM_YAW_DEG))
    pitch = math.radians(_uniform(rng, _CAM_PITCH_DEG))
    origin = np.array([cam_x, cam_y, cam_z])
    cam_to_world = _camera_to_world(yaw, pitch)
    dirs = cam_to_world @ _camera_rays(size)  # (3, N) world directions
    dd = np.einsum("ij,ij->j", dirs, dirs)

    # --- room: surface ids 0..5 are the room faces, primitives 6, 7, ... ---
    best_t, surface = _hit_room(origin, dirs, lo, hi)
    normal_w = _ROOM_FACE_NORMALS.T[:, surface]  # (3, N)
    labels = list(_ROOM_FACE_LABELS)

    # --- primitives standing on the floor in front of the camera -----------
    n_objects = int(rng.integers(_NUM_OBJECTS[0], _NUM_OBJECTS[1] + 1))
    tan_half = math.tan(math.radians(FOV_DEGREES) / 2.0)
    footprints: list[tuple[float, float, float]] = []
    for _ in range(n_objects):
        kind = int(rng.integers(3))
        if kind == 0:
            half = rng.uniform((0.2, 0.2, 0.15), (0.6, 0.6, 0.6))
            extent = math.hypot(half[0], half[1])
        elif kind == 1:
            radius = float(rng.uniform(0.2, 0.6))
            extent = radius
        else:
            radius = float(rng.uniform(0.15, 0.45))
            cyl_height = float(rng.uniform(0.3, 1.5))
            extent = radius
        # Ahead of the camera (never around it), inside the room, roughly in
        # view; a few tries to keep footprints apart (overlap is allowed if
        # they all fail).
        for _try in range(_PLACEMENT_TRIES):
            y_min = cam_y + 1.0 + extent
            y_max = min(length - 0.05 - extent, cam_y + 5.0)
            py = float(rng.uniform(y_min, y_max))
            ahead = py - cam_y
            x_mid = cam_x + ahead * math.tan(yaw)
            spread = 0.8 * ahead * tan_half
            px = float(rng.uniform(x_mid - spread, x_mid + spread))
            px = min(max(px, lo[0] + 0.05 + extent), hi[0] - 0.05 - extent)
            if all(math.hypot(px - qx, py - qy) > extent + qe for qx, qy, qe in footprints):
                break
        footprints.append((px, py, extent))

        if kind == 0:
            angle = float(rng.uniform(0.0, math.pi / 2))
            center = np.array([px, py, half[2]])
            bound = float(np.linalg.norm(half))
        elif kind == 1:
            center = np.array([px, py, radius])
            bound = radius
        else:
            center = np.array([px, py, cyl_height / 2])
            bound = math.hypot(radius, cyl_height / 2)
        # Intersect exactly only the rays that meet the bounding sphere.
        idx = _bounding_candidates(origin, dirs, dd, center, bound)
        sub = dirs[:, idx]
        if kind == 0:
            t, n = _hit_box(origin, sub, center, half, angle)
            label = _BOX
        elif kind == 1:
            t, n = _hit_sphere(origin, sub, center, radius)
            label = _SPHERE
        else:
            base = np.array([px, py, 0.0])
            t, n = _hit_cylinder(origin, sub, base, radius, cyl_height)
            label = _CYLINDER
        closer = t < best_t[idx]
        won = idx[closer]
        best_t[won] = t[closer]
        normal_w[:, won] = n[:, closer]
        surface[won] = len(labels)
        labels.append(label)

    # --- appearance ----------------------------------------------------------
    palette = rng.uniform(0.12, 0.92, size=(len(labels), 3)).astype(np.float32)
    albedo = np.take(palette, surface, axis=0)  # (N, 3)

    hit_x = origin[0] + best_t * dirs[0]
    hit_y = origin[1] + best_t * dirs[1]
    checker = _uniform(rng, (0.35, 0.9))
    stripe = _uniform(rng, (0.2, 0.6))
    contrast = rng.uniform(0.05, 0.2, size=2)
    parity = (np.floor(hit_x / checker) + np.floor(hit_y / checker)).astype(np.int64) & 1
    floor_tex = 1.0 - contrast[0] * parity
    # Stripes along each wall: by y on the X walls, by x on the Y walls.
    along = np.where(surface < 2, hit_y, hit_x)
    wall_tex = 1.0 - contrast[1] * (np.floor(along / stripe).astype(np.int64) & 1)
    texture = np.where(surface == _FLOOR_FACE, floor_tex, np.where(surface < 4, wall_tex, 1.0))

    azimuth = _uniform(rng, (0.0, 2.0 * math.pi))
    elevation = math.radians(_uniform(rng, (25.0, 80.0)))
    light = np.array(
        [
            math.cos(elevation) * math.cos(azimuth),
            math.cos(elevation) * math.sin(azimuth),
            math.sin(elevation),
        ]
    )
    ambient = _uniform(rng, (0.3, 0.6))
    shade = ambient + (1.0 - ambient) * np.maximum(light @ normal_w, 0.0)

    radiance = albedo * (255.0 * texture * shade).astype(np.float32)[:, None]
    # Uniform noise in [-a, a) with standard deviation _NOISE_STD.
    noise = rng.random(radiance.shape, dtype=np.float32)
    radiance += (noise - 0.5) * np.float32(2.0 * math.sqrt(3.0) * _NOISE_STD)
    image = np.clip(np.rint(radiance), 0, 255).astype(np.uint8)

    segmentation = np.asarray(labels, dtype=np.uint8)[surface]
    normal_c = normal_w.T @ cam_to_world  # row i = R^T n_i
    return Scene(
        image=image.reshape(size, size, 3),
        segmentation=segmentation.reshape(size, size),
        depth=best_t.astype(np.float32).reshape(size, size),
        normal=normal_c.astype(np.float32).reshape(size, size, 3),
    )


def render_split(split: str, count: int, size: int = 64, version: int = 1) -> dict[str, np.ndarray]:
    """Render and stack ``count`` scenes of a split.

    Returns a dict with keys ``image`` ``(N, H, W, 3)`` uint8,
    ``segmentation`` ``(N, H, W)`` uint8, ``depth`` ``(N, H, W)`` float32 and
    ``normal`` ``(N, H, W, 3)`` float32.

    Sample ``i`` is deterministic from ``(split, i, version)`` alone: its
    generator is ``np.random.default_rng(np.random.SeedSequence([version,
    SPLIT_ID[split], i]))``.  Hence ``render_split("train", 10)[k]`` equals
    ``render_split("train", 20)[k]`` for every key and ``k < 10``.

    Raises:
        ValueError: for a split not in :data:`SPLIT_ID`, or a negative count.
    """
    if split not in SPLIT_ID:
        raise ValueError(f"unknown split {split!r}; expected one of {sorted(SPLIT_ID)}")
    if count < 0:
        raise ValueError(f"count must be non-negative, got {count}")
    out: dict[str, np.ndarray] = {
        "image": np.empty((count, size, size, 3), dtype=np.uint8),
        "segmentation": np.empty((count, size, size), dtype=np.uint8),
        "depth": np.empty((count, size, size), dtype=np.float32),
        "normal": np.empty((count, size, size, 3), dtype=np.float32),
    }
    split_id = SPLIT_ID[split]
    for i in range(count):
        rng = np.random.default_rng(np.random.SeedSequence([version, split_id, i]))
        scene = render_scene(rng, size)
        out["image"][i] = scene.image
        out["segmentation"][i] = scene.segmentation
        out["depth"][i] = scene.depth
        out["normal"][i] = scene.normal
    return out
