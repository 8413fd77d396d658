"""`celeba`: CelebA's 40 binary face attributes, the many-task protocol of MGDA and FAMO.

The data are the official release's files, read from `$MTLB_CELEBA_ROOT`
(default `<data root>/celeba`); nothing is downloaded:

- ``img_align_celeba/<name>.jpg``: the aligned and cropped faces, 178 wide x 218
  high (``000001.jpg`` .. ``202599.jpg``);
- ``list_attr_celeba.txt``: the image count, then the 40 attribute names, then
  one line per image: its file name and 40 values, 1 or -1;
- ``list_eval_partition.txt``: one line per image: its file name and 0 (train),
  1 (validation) or 2 (test).

The protocol's train split is partition 0 (162,770 images) and its test
split partition 2 (19,962); partition 1 is not used (tuning carves its
validation part from the train split, as on every benchmark).  Each task is
one attribute, a 2-class classification (target 1 where the file says 1),
trained with cross-entropy on two logits as in MGDA's code; its metrics are
accuracy and balanced accuracy.

Every file is checked on first use (present; the lists well formed, in
agreement with each other and with the protocol's split sizes; every image a
readable 178 x 218 picture); a problem is one `DatasetError` line naming the
file (and line) and what was expected.  The checked split is cached as
contiguous float32 arrays under `<data root>/cache/celeba/`, stamped with the
source files' sizes and times (about 8 GB for the train split), and later
jobs map it (`np.load(mmap_mode="c")`) instead of decoding the JPEGs again.

Protocol v1, with the source of each value:

- 64 x 64 input: the aligned image resized whole (bilinear) to 64 x 64, then
  the channel means of MGDA's loader subtracted and divided by 255 (Sener &
  Koltun 2018, `loaders/celeba_loader.py`: ``imresize`` to ``img_size`` 64 x
  64, ``img -= mean; img / 255``).
- 40 tasks, the official train / test partitions: MGDA and FAMO (Liu et al. 2023).
- Adam, lr 3e-4, batch 256, 15 epochs, no augmentation: FAMO's CelebA
  setting (`experiments/celeba`); here the baseline's optimiser and the limit
  of a spec's.
- Backbones: `small-cnn` and `resnet18-dilated` (MGDA's encoder is a
  ResNet-18), trained from scratch; 3 seeds; one GPU and 4 CPUs per job.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from runners.benchmarks.base import BENCHMARKS, Batch, Benchmark, Protocol, Resources
from runners.benchmarks.npy_layout import DatasetError, cache_root, write_image_cache
from runners.paths import data_root
from runners.tasks import Classification

ROOT_ENV = "MTLB_CELEBA_ROOT"
IMAGES = "img_align_celeba"
ATTRIBUTE_FILE = "list_attr_celeba.txt"
PARTITION_FILE = "list_eval_partition.txt"
# (width, height) of every aligned image.
ALIGNED_SIZE = (178, 218)
# The protocol's split -> the partition's number in list_eval_partition.txt.
PARTITIONS = {"train": 0, "test": 2}
# MGDA's loader subtracts these (RGB, grey levels) before dividing by 255.
MEAN_RGB = (73.15835921, 82.90891754, 72.39239876)
# Bump when the cache's format or the checks change: old caches are then ignored.
CACHE_FORMAT = 1

ATTRIBUTE_NAMES: tuple[str, ...] = (
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs",
    "Big_Lips", "Big_Nose", "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair",
    "Bushy_Eyebrows", "Chubby", "Double_Chin", "Eyeglasses", "Goatee", "Gray_Hair",
    "Heavy_Makeup", "High_Cheekbones", "Male", "Mouth_Slightly_Open", "Mustache",
    "Narrow_Eyes", "No_Beard", "Oval_Face", "Pale_Skin", "Pointy_Nose", "Receding_Hairline",
    "Rosy_Cheeks", "Sideburns", "Smiling", "Straight_Hair", "Wavy_Hair", "Wearing_Earrings",
    "Wearing_Hat", "Wearing_Lipstick", "Wearing_Necklace", "Wearing_Necktie", "Young",
)  # fmt: skip
"""The 40 attributes, in the order of list_attr_celeba.txt's header."""

TASKS = tuple(Classification(name, num_classes=2) for name in ATTRIBUTE_NAMES)


@dataclass(frozen=True)
class Listing:
    """The two lists, checked: image file names in order, their 0/1 labels and partitions."""

    names: tuple[str, ...]
    labels: np.ndarray  # (N, 40) int64, 0 or 1
    partitions: np.ndarray  # (N,) int64, 0, 1 or 2


def _lines(path: Path) -> list[str]:
    if not path.is_file():
        raise DatasetError(f"celeba: {path}: file not found (the official release's list)")
    try:
        return path.read_text(encoding="ascii").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(f"celeba: {path}: not a readable text file ({e})") from None


def read_attributes(path: Path) -> tuple[tuple[str, ...], np.ndarray]:
    """(image names, (N, 40) labels in {0, 1}) of list_attr_celeba.txt, every line checked."""
    lines = _lines(path)
    if len(lines) < 2 or not lines[0].strip().isdigit():
        raise DatasetError(f"celeba: {path}:1: expected the image count, found {lines[:1]!r}")
    count = int(lines[0])
    header = tuple(lines[1].split())
    if header != ATTRIBUTE_NAMES:
        raise DatasetError(
            f"celeba: {path}:2: expected the 40 attribute names of CelebA"
            f" ({ATTRIBUTE_NAMES[0]} ... {ATTRIBUTE_NAMES[-1]}), found {len(header)} names"
            f" starting {' '.join(header[:2])!r}"
        )
    rows = [line.split() for line in lines[2:] if line.strip()]
    if len(rows) != count:
        raise DatasetError(f"celeba: {path}: line 1 says {count} images, found {len(rows)} lines")
    labels = np.empty((count, len(ATTRIBUTE_NAMES)), dtype=np.int64)
    names = []
    for i, row in enumerate(rows):
        if len(row) != 1 + len(ATTRIBUTE_NAMES) or any(v not in ("1", "-1") for v in row[1:]):
            raise DatasetError(
                f"celeba: {path}:{i + 3}: expected a file name and 40 values 1 or -1,"
                f" found {' '.join(row[:4])} ... ({len(row)} fields)"
            )
        names.append(row[0])
        labels[i] = [v == "1" for v in row[1:]]
    return tuple(names), labels


def read_partitions(path: Path, names: tuple[str, ...]) -> np.ndarray:
    """(N,) partition of each image of `names`, from list_eval_partition.txt, checked."""
    rows = [line.split() for line in _lines(path) if line.strip()]
    out = np.empty(len(rows), dtype=np.int64)
    for i, row in enumerate(rows):
        if len(row) != 2 or row[1] not in ("0", "1", "2"):
            raise DatasetError(
                f"celeba: {path}:{i + 1}: expected a file name and 0, 1 or 2, found {row!r}"
            )
        if i >= len(names) or row[0] != names[i]:
            expected = names[i] if i < len(names) else "no more images"
            raise DatasetError(
                f"celeba: {path}:{i + 1}: expected {expected} (the order of {ATTRIBUTE_FILE}),"
                f" found {row[0]}"
            )
        out[i] = int(row[1])
    if len(rows) != len(names):
        raise DatasetError(
            f"celeba: {path}: {len(rows)} images listed, {ATTRIBUTE_FILE} lists {len(names)}"
        )
    return out


def read_listing(root: Path) -> Listing:
    if not root.is_dir():
        raise DatasetError(
            f"celeba: data root {root} does not exist; expected the official release:"
            f" {root}/{{{IMAGES}/<name>.jpg,{ATTRIBUTE_FILE},{PARTITION_FILE}}}"
        )
    names, labels = read_attributes(root / ATTRIBUTE_FILE)
    return Listing(names, labels, read_partitions(root / PARTITION_FILE, names))


def read_image(path: Path, size: int) -> np.ndarray:
    """(size, size, 3) float32: the aligned image resized whole, MGDA's means off, / 255."""
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise DatasetError(f"celeba: {path}: file not found")
    try:
        with Image.open(path) as image:
            if image.size != ALIGNED_SIZE:
                width, height = ALIGNED_SIZE
                raise DatasetError(
                    f"celeba: {path}: expected an aligned image of {width} x {height},"
                    f" found {image.size[0]} x {image.size[1]}"
                )
            resized = image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
    except (OSError, UnidentifiedImageError) as e:
        raise DatasetError(f"celeba: {path}: not a readable image ({e})") from None
    pixels = np.asarray(resized, dtype=np.float32)
    return (pixels - np.asarray(MEAN_RGB, dtype=np.float32)) / 255.0


def stamp(root: Path, files: list[Path], size: int) -> str:
    """A digest of what a cached split depends on: its files' paths, sizes and mtimes."""
    digest = hashlib.sha256(json.dumps([CACHE_FORMAT, str(root.resolve()), size]).encode())
    for path in [root / ATTRIBUTE_FILE, root / PARTITION_FILE, *files]:
        info = path.stat()
        digest.update(f"{path.name}:{info.st_size}:{info.st_mtime_ns};".encode())
    return digest.hexdigest()[:24]


def load_split(root: Path, split: str, count: int, size: int) -> dict[str, np.ndarray]:
    """`image` (N, size, size, 3) float32 and `labels` (N, 40) int64 of a split, via the cache.

    Raises `DatasetError` naming the file and what was expected.
    """
    if split not in PARTITIONS:
        raise ValueError(f"split must be one of {sorted(PARTITIONS)}, got {split!r}")
    listing = read_listing(root)
    chosen = np.flatnonzero(listing.partitions == PARTITIONS[split])
    if len(chosen) != count:
        raise DatasetError(
            f"celeba: {root / PARTITION_FILE}: expected {count} images in partition"
            f" {PARTITIONS[split]} (the protocol's {split} split), found {len(chosen)}"
        )
    files = [root / IMAGES / listing.names[i] for i in chosen]
    missing = next((f for f in files if not f.is_file()), None)
    if missing is not None:
        raise DatasetError(f"celeba: {missing}: file not found (listed in {PARTITION_FILE})")
    directory = cache_root() / "celeba" / f"{split}-{size}px-{stamp(root, files, size)}"
    if not directory.is_dir():
        write_image_cache(directory, f"{split}-", files, listing.labels[chosen], size, read_image)
    return {
        key: np.load(directory / f"{key}.npy", mmap_mode="c", allow_pickle=False)
        for key in ("image", "labels")
    }


class CelebA(Benchmark):
    """CelebA from the release's files under `$MTLB_CELEBA_ROOT` or `<data root>/celeba`."""

    def __init__(self, name: str, description: str, protocols: dict[int, Protocol]) -> None:
        self.name = name
        self.description = description
        self.tasks = TASKS
        self.protocols = protocols

    def root(self) -> Path:
        configured = os.environ.get(ROOT_ENV)
        return Path(configured) if configured else data_root() / "celeba"

    def load(self, split: str, protocol: Protocol) -> Batch:
        """`image` (N, 3, 64, 64) channels_last over the cache; one int64 (N,) per attribute."""
        count = protocol.train_size if split == "train" else protocol.test_size
        arrays = load_split(self.root(), split, count, protocol.image_size)
        batch: Batch = {"image": torch.from_numpy(arrays["image"]).permute(0, 3, 1, 2)}
        labels = torch.from_numpy(arrays["labels"])
        for k, task in enumerate(self.tasks):
            batch[task.name] = labels[:, k].contiguous()
        return batch


PROTOCOL_V1 = Protocol(
    version=1,
    image_size=64,
    train_size=162_770,
    test_size=19_962,
    epochs=15,
    batch_size=256,
    seeds=(0, 1, 2),
    backbones=("small-cnn", "resnet18-dilated"),
    max_lr=0.1,
    # The single-task baseline on the ResNet-18 is 40 of them: 447M parameters; NDDR-CNN
    # (40 of them fused after each stage) 585M.  Every architecture at its defaults fits.
    max_parameters=600_000_000,
    # Every architecture at its defaults fits: single-task and cross-stitch on the
    # ResNet-18 (40 networks) need 60 GFLOP per image.
    max_flops=100_000_000_000,
    baseline_optimizer={"name": "adam", "lr": 3e-4, "weight_decay": 0.0},
    resources=Resources(cpus=4, gpus=1),
    description=(
        "CelebA's aligned faces resized to 64x64, 40 binary attributes, the official"
        " partitions (162,770 train / 19,962 test), Adam lr 3e-4, 15 epochs, batch 256, 3 seeds."
    ),
)

CELEBA = BENCHMARKS.register("celeba")(
    CelebA(
        "celeba",
        "CelebA (Liu et al. 2015) aligned faces with their 40 binary attributes: the many-task"
        " setting of MGDA and FAMO.",
        {1: PROTOCOL_V1},
    )
)
