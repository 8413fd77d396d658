"""Real datasets in the preprocessed `.npy` layout of mtan (Liu et al., CVPR 2019).

mtan, CAGrad, Nash-MTL and LibMTL all read NYUv2 and Cityscapes from the
same preprocessed files: one `.npy` file per image and per kind,
``<root>/{train,val}/<folder>/<i>.npy`` with ``i = 0 .. N-1``; an image is an
H x W x 3 float array in [0, 1], a label map H x W (float, -1 where
unlabelled), a depth map H x W x 1 (0 where unknown), a normal map H x W x 3
(0 where unknown).  The protocol's `test` split is the `val` folder.

`load_split` checks every file (present, shape, dtype, values where cheap)
and turns the split into one contiguous float32/int64 array per kind, cached
under the data root with a stamp of the source files (path, size, mtime): the
first job reads the thousands of small files once, every later job maps the
cached arrays (`np.load(mmap_mode="c")`: no copy until the tensors move to a
device, and jobs on one machine share the page cache).  The cached image
array is N x H x W x 3, so the (N, 3, H, W) tensor over it is in
channels_last order without a copy.

`scale_crop_flip` is the augmentation of those repositories, on a whole
batch on its device.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from runners.benchmarks.base import Batch, Benchmark, Protocol
from runners.paths import data_root
from runners.tasks import Segmentation, Task

# The protocol's split -> the layout's folder.
SPLIT_FOLDERS = {"train": "train", "test": "val"}
# The schedule of mtan, CAGrad, Nash-MTL and LibMTL on both datasets: the
# baseline's optimiser and scheduler as a spec writes them.
MTAN_ADAM = {"name": "adam", "lr": 1e-4, "weight_decay": 0.0}
MTAN_STEP = {"name": "step", "step_size": 100, "gamma": 0.5}
# Bump when the cache's format or the checks change: old caches are then ignored.
CACHE_FORMAT = 1

Kind = Literal["image", "label", "depth", "normal"]
FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
# Labels are stored as floats by mtan's preprocessing; integer files are accepted too.
LABEL_DTYPES = (*FLOATS, *(np.dtype(t) for t in (np.int8, np.int16, np.int32, np.int64)))
# Unit normals, with room for the rounding of the stored floats.
NORMAL_BOUND = 1.0 + 1e-3


class DatasetError(ValueError):
    """The data root is missing or a file does not have the layout's form."""


@dataclass(frozen=True)
class Field:
    """One kind of file in the layout: its folder and the batch key it becomes."""

    folder: str
    key: str
    kind: Kind
    channels: int = 0  # 0: an H x W array (labels); else H x W x channels

    def shape(self, height: int, width: int) -> tuple[int, ...]:
        return (height, width) if self.channels == 0 else (height, width, self.channels)


@dataclass(frozen=True)
class Layout:
    """The files of one dataset and what the loader checks them against."""

    benchmark: str
    fields: tuple[Field, ...]
    num_classes: int
    # The label unlabelled pixels get in a batch: the segmentation task's ignore_index.
    ignore_index: int

    def describe(self, root: Path) -> str:
        folders = ",".join(f.folder for f in self.fields)
        return f"{root}/{{train,val}}/{{{folders}}}/<i>.npy"


def cache_root() -> Path:
    return data_root() / "cache"


def stamp(root: Path, layout: Layout, split: str, count: int, shape: tuple[int, int]) -> str:
    """A digest of what the cached split depends on: the files' paths, sizes and mtimes."""
    digest = hashlib.sha256()
    header = [CACHE_FORMAT, str(root.resolve()), layout.benchmark, split, count, list(shape)]
    digest.update(json.dumps(header).encode())
    for field in layout.fields:
        for i in range(count):
            path = root / SPLIT_FOLDERS[split] / field.folder / f"{i}.npy"
            info = path.stat()
            digest.update(f"{field.folder}/{i}:{info.st_size}:{info.st_mtime_ns};".encode())
    return digest.hexdigest()[:24]


def check_folders(root: Path, layout: Layout, split: str, count: int) -> None:
    """Every folder holds exactly the files 0.npy .. count-1.npy."""
    name = layout.benchmark
    if not root.is_dir():
        raise DatasetError(
            f"{name}: data root {root} does not exist; expected the preprocessed layout of"
            f" mtan: {layout.describe(root)}"
        )
    expected = {f"{i}.npy" for i in range(count)}
    for field in layout.fields:
        folder = root / SPLIT_FOLDERS[split] / field.folder
        if not folder.is_dir():
            raise DatasetError(
                f"{name}: {folder}: folder not found; expected {count} files 0.npy to"
                f" {count - 1}.npy ({layout.describe(root)})"
            )
        present = {p.name for p in folder.iterdir() if p.suffix == ".npy"}
        missing = sorted(expected - present, key=lambda p: int(p[:-4]))
        if missing:
            raise DatasetError(
                f"{name}: {folder / missing[0]}: file not found ({len(missing)} of"
                f" 0.npy to {count - 1}.npy missing in {folder})"
            )
        if len(present) != count:
            raise DatasetError(
                f"{name}: {folder}: expected {count} .npy files (the protocol's {split} split),"
                f" found {len(present)}"
            )


def read_file(path: Path, layout: Layout, field: Field, shape: tuple[int, ...]) -> np.ndarray:
    """One file's array, its form and values checked; labels come back as int64."""
    where = f"{layout.benchmark}: {path}"
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise DatasetError(f"{where}: not a readable .npy array ({e})") from None
    if array.shape != shape:
        raise DatasetError(f"{where}: expected shape {shape}, found {array.shape}")
    allowed = LABEL_DTYPES if field.kind == "label" else FLOATS
    if array.dtype not in allowed:
        names = " or ".join(str(d) for d in allowed)
        raise DatasetError(f"{where}: expected dtype {names}, found {array.dtype}")
    values = np.asarray(array)
    if field.kind == "label":
        return label_values(values, where, layout)
    if not np.isfinite(values).all():
        raise DatasetError(f"{where}: expected finite values, found NaN or infinity")
    low, high = float(values.min()), float(values.max())
    if field.kind == "image" and (low < 0.0 or high > 1.0):
        raise DatasetError(f"{where}: expected values in [0, 1], found {low:g} to {high:g}")
    if field.kind == "depth" and low < 0.0:
        raise DatasetError(f"{where}: expected depths >= 0 (0: unknown), found {low:g}")
    if field.kind == "normal" and max(-low, high) > NORMAL_BOUND:
        raise DatasetError(
            f"{where}: expected normal components in [-1, 1], found {low:g} to {high:g}"
        )
    return values


def label_values(values: np.ndarray, where: str, layout: Layout) -> np.ndarray:
    """Class indices in [0, C) kept, -1 (unlabelled) -> the task's ignore_index, as int64."""
    c = layout.num_classes
    if values.dtype.kind == "f":
        if not np.isfinite(values).all():
            raise DatasetError(f"{where}: expected labels in [-1, {c}), found NaN or infinity")
        if not (values == np.floor(values)).all():
            raise DatasetError(f"{where}: expected integer labels, found fractional values")
    low, high = values.min(), values.max()
    if low < -1 or high >= c:
        raise DatasetError(
            f"{where}: expected labels in [-1, {c}) (-1: unlabelled), found {low:g} to {high:g}"
        )
    labels = values.astype(np.int64)
    labels[labels == -1] = layout.ignore_index
    return labels


def load_split(
    root: Path, layout: Layout, split: str, count: int, shape: tuple[int, int]
) -> dict[str, np.ndarray]:
    """The split as one array per field (N x H x W [x C]; float32, labels int64), via the cache.

    Raises `DatasetError` naming the file and what was expected.
    """
    if split not in SPLIT_FOLDERS:
        raise ValueError(f"split must be one of {sorted(SPLIT_FOLDERS)}, got {split!r}")
    check_folders(root, layout, split, count)
    directory = (
        cache_root() / layout.benchmark / f"{split}-{stamp(root, layout, split, count, shape)}"
    )
    if not directory.is_dir():
        write_cache(directory, root, layout, split, count, shape)
    return {
        f.key: np.load(directory / f"{f.key}.npy", mmap_mode="c", allow_pickle=False)
        for f in layout.fields
    }


def write_cache(
    directory: Path, root: Path, layout: Layout, split: str, count: int, shape: tuple[int, int]
) -> None:
    """Read and check every file into arrays in a temporary folder, then rename it into place.

    The arrays are written through memory maps (the split never needs to fit in
    memory twice); the rename makes the cache appear whole or not at all, so
    concurrent jobs never read a partial one.  Caches of older versions of the
    same split (other stamps) are removed.
    """
    with cache_folder(directory, f"{split}-") as tmp:
        for field in layout.fields:
            dtype = np.int64 if field.kind == "label" else np.float32
            out = np.lib.format.open_memmap(
                tmp / f"{field.key}.npy",
                mode="w+",
                dtype=dtype,
                shape=(count, *field.shape(*shape)),
            )
            folder = root / SPLIT_FOLDERS[split] / field.folder
            for i in range(count):
                out[i] = read_file(folder / f"{i}.npy", layout, field, field.shape(*shape))
            out.flush()
            del out


@contextmanager
def cache_folder(directory: Path, prefix: str) -> Iterator[Path]:
    """A temporary folder beside `directory` to write a cache into, renamed into place on
    success: the cache appears whole or not at all, so concurrent jobs never read a partial
    one.  Then older caches of the same data (other stamps: names `prefix*`) go."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{prefix}tmp-"))
    try:
        yield tmp
        try:
            tmp.rename(directory)
        except OSError:
            if not directory.is_dir():  # not another job's identical cache that won the race
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for old in directory.parent.glob(f"{prefix}*"):
        if old != directory and not old.name.startswith("."):
            shutil.rmtree(old, ignore_errors=True)


def write_image_cache(
    directory: Path,
    prefix: str,
    files: Sequence[Path],
    labels: np.ndarray,
    size: int,
    read_image: Callable[[Path, int], np.ndarray],
) -> None:
    """Decode and check every image (`read_image`) into `image.npy`, (N, size, size, 3)
    float32 through a memory map (the split never needs to fit in memory), and `labels`
    into `labels.npy`, in a `cache_folder`."""
    with cache_folder(directory, prefix) as tmp:
        out = np.lib.format.open_memmap(
            tmp / "image.npy", mode="w+", dtype=np.float32, shape=(len(files), size, size, 3)
        )
        for i, path in enumerate(files):
            out[i] = read_image(path, size)
        out.flush()
        del out
        np.save(tmp / "labels.npy", labels)


def to_batch(arrays: dict[str, np.ndarray], layout: Layout) -> Batch:
    """Tensors over the arrays, without copying: images and normals (N, C, H, W), channels_last."""
    batch: Batch = {}
    for field in layout.fields:
        tensor = torch.from_numpy(arrays[field.key])
        batch[field.key] = tensor if field.channels == 0 else tensor.permute(0, 3, 1, 2)
    return batch


# ----------------------------------------------------------------------- augmentation
SCALES = (1.0, 1.2, 1.5)


def _nearest(index: torch.Tensor, crop: int, size: int) -> torch.Tensor:
    """F.interpolate(mode="nearest")'s source index: floor(dst * float32(crop / size))."""
    scale = torch.tensor(crop, dtype=torch.float32) / size
    return torch.clamp(torch.floor(index * scale).long(), max=crop - 1)


def _linear(index: torch.Tensor, crop: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Bilinear with align_corners=True: the lower source index and the weight of the next."""
    # float32 arithmetic, as PyTorch's kernel: (crop - 1) / (size - 1), then dst * scale.
    scale = torch.tensor(crop - 1, dtype=torch.float32) / max(size - 1, 1)
    source = index * scale
    low = torch.floor(source).long().clamp(max=crop - 1)
    return low, source - low


def _rows(x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """x (B, C, H', W') at rows (B, H) per sample -> (B, C, H, W')."""
    b, c, _, w = x.shape
    return x.gather(2, rows[:, None, :, None].expand(b, c, rows.shape[1], w))


def _cols(x: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """x (B, C, H, W') at cols (B, W) per sample -> (B, C, H, W)."""
    b, c, h, _ = x.shape
    return x.gather(3, cols[:, None, None, :].expand(b, c, h, cols.shape[1]))


@dataclass(frozen=True)
class Draw:
    """The random choices for one sample: scale, crop corner, flip."""

    scale: float
    top: int
    left: int
    flip: bool


def draw(
    batch_size: int, height: int, width: int, generator: torch.Generator, scales: Sequence[float]
) -> list[Draw]:
    """One draw per sample from `generator` (CPU): the job's generator, so runs repeat."""
    which = torch.randint(len(scales), (batch_size,), generator=generator).tolist()
    corner = torch.rand(batch_size, 2, generator=generator, dtype=torch.float64).tolist()
    flips = (torch.rand(batch_size, generator=generator) < 0.5).tolist()
    draws = []
    for k, (u, v), flip in zip(which, corner, flips, strict=True):
        s = scales[k]
        h, w = int(height / s), int(width / s)  # as mtan: the crop is int(size / scale)
        draws.append(
            Draw(
                s,
                min(int(u * (height - h + 1)), height - h),
                min(int(v * (width - w + 1)), width - w),
                flip,
            )
        )
    return draws


def scale_crop_flip(
    batch: Batch,
    generator: torch.Generator,
    *,
    scales: Sequence[float] = SCALES,
    draws: list[Draw] | None = None,
) -> Batch:
    """mtan's RandomScaleCrop then a horizontal flip, per sample, batched on the batch's device.

    For each sample: a scale s from `scales` (uniform), a window of
    ``int(H / s) x int(W / s)`` at a uniform position, resized back to H x W;
    the image and the normals bilinearly (align_corners=True), labels and
    depth by nearest neighbour (F.interpolate's "nearest"), depth divided by
    s (the scene is s times closer).  Then, with probability 1/2, a
    horizontal flip of everything, negating the normals' x component.  This
    is RandomScaleCrop of mtan issue #34 as used by CAGrad, Nash-MTL and
    LibMTL (create_dataset.py), with their flip.  `draws` fixes the random
    choices (tests); otherwise they come from `generator`.
    """
    image = batch["image"]
    b, _, height, width = image.shape
    device = image.device
    if draws is None:
        draws = draw(b, height, width, generator, scales)
    out_rows = torch.arange(height, dtype=torch.float32)
    out_cols = torch.arange(width, dtype=torch.float32)
    near_r, near_c, low_r, low_c, w_r, w_c = [], [], [], [], [], []
    for d in draws:
        h, w = int(height / d.scale), int(width / d.scale)
        if not (0 <= d.top <= height - h and 0 <= d.left <= width - w):
            raise ValueError(f"scale_crop_flip: {d} puts the window outside {height}x{width}")
        nr, nc = _nearest(out_rows, h, height) + d.top, _nearest(out_cols, w, width) + d.left
        (lr, wr), (lc, wc) = _linear(out_rows, h, height), _linear(out_cols, w, width)
        lr, lc = lr + d.top, lc + d.left
        if d.flip:
            nc, lc, wc = nc.flip(0), lc.flip(0), wc.flip(0)
        near_r.append(nr)
        near_c.append(nc)
        low_r.append(lr)
        low_c.append(lc)
        w_r.append(wr)
        w_c.append(wc)
    # A window's last row/column has no next one inside the window (its weight is 0 there).
    last_r = torch.tensor([d.top + int(height / d.scale) - 1 for d in draws])[:, None]
    last_c = torch.tensor([d.left + int(width / d.scale) - 1 for d in draws])[:, None]
    rows0, cols0 = torch.stack(low_r), torch.stack(low_c)
    rows1, cols1 = torch.minimum(rows0 + 1, last_r), torch.minimum(cols0 + 1, last_c)

    def nearest(x: torch.Tensor) -> torch.Tensor:
        return _cols(_rows(x, torch.stack(near_r).to(device)), torch.stack(near_c).to(device))

    def bilinear(x: torch.Tensor) -> torch.Tensor:
        # Separable: rows first, then columns (half the gathers of four corners).
        r0, r1, c0, c1 = (t.to(device) for t in (rows0, rows1, cols0, cols1))
        wr = torch.stack(w_r).to(device, x.dtype)[:, None, :, None]
        wc = torch.stack(w_c).to(device, x.dtype)[:, None, None, :]
        between_rows = torch.lerp(_rows(x, r0), _rows(x, r1), wr)
        return torch.lerp(_cols(between_rows, c0), _cols(between_rows, c1), wc)

    out: Batch = {}
    for key, value in batch.items():
        if key == "image":
            out[key] = bilinear(value).contiguous(memory_format=torch.channels_last)
        elif key == "normal":
            normal = bilinear(value)
            sign = torch.tensor([-1.0 if d.flip else 1.0 for d in draws], device=device)
            normal[:, 0] *= sign[:, None, None].to(normal.dtype)
            out[key] = normal
        elif key == "depth":
            scale = torch.tensor([d.scale for d in draws], device=device, dtype=value.dtype)
            out[key] = nearest(value) / scale[:, None, None, None]
        elif value.ndim == 3:  # labels (B, H, W)
            out[key] = nearest(value[:, None])[:, 0]
        else:
            raise ValueError(f"scale_crop_flip: no rule for batch key {key!r}")
    return out


# ----------------------------------------------------------------------- the benchmark
class NpyBenchmark(Benchmark):
    """A real dataset in the layout above, under `$<root_env>` or `<data root>/<name>`."""

    def __init__(
        self,
        name: str,
        description: str,
        tasks: tuple[Task, ...],
        folders: dict[str, str],
        root_env: str,
        protocols: dict[int, Protocol],
    ) -> None:
        """`folders`: the layout's folder of each batch key (`image` and one per task)."""
        self.name = name
        self.description = description
        self.tasks = tasks
        self.protocols = protocols
        self.root_env = root_env
        segmentation = next(t for t in tasks if isinstance(t, Segmentation))
        kinds: dict[str, tuple[Kind, int]] = {
            "image": ("image", 3),
            "segmentation": ("label", 0),
            "depth": ("depth", 1),
            "normal": ("normal", 3),
        }
        self.layout = Layout(
            name,
            tuple(Field(folder, key, *kinds[key]) for key, folder in folders.items()),
            segmentation.num_classes,
            segmentation.ignore_index,
        )

    def root(self) -> Path:
        """Where the dataset is: `$<root_env>` if set, else `<data root>/<name>`."""
        configured = os.environ.get(self.root_env)
        return Path(configured) if configured else data_root() / self.name

    def load(self, split: str, protocol: Protocol) -> Batch:
        count = protocol.train_size if split == "train" else protocol.test_size
        return to_batch(
            load_split(self.root(), self.layout, split, count, protocol.height_width), self.layout
        )

    def augment(self, batch: Batch, generator: torch.Generator) -> Batch:
        return scale_crop_flip(batch, generator)
