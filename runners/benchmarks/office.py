"""`office-31` and `office-home`: LibMTL's multi-input Office benchmarks.

Each domain is a task with its own images and labels (`Benchmark.multi_input`);
only the encoder is shared.  The data are the datasets' own releases plus
LibMTL's split lists, read from `$MTLB_OFFICE31_ROOT` / `$MTLB_OFFICEHOME_ROOT`
(default `<data root>/office-31`, `<data root>/office-home`); nothing is
downloaded:

- ``<domain>_{train,test}.txt``: LibMTL's lists (``examples/office/data_txt/
  <dataset>/`` at median-research-group/LibMTL 4336804), one image a line:
  its path relative to the root and its class, ``amazon/images/back_pack/
  frame_0065.jpg 0``;
- the images those lines name: Office-31's ``<domain>/images/<class>/*.jpg``,
  Office-Home's ``<Domain>/<Class>/*.jpg``.

LibMTL's split is 60 / 20 / 20 per domain (train / val / test); the protocol
trains on train and tests on test.  The val lists are not read: tuning carves
its validation part from each domain's train images, as on every benchmark
(`runners.tuning`).  Every list is checked on first use against LibMTL's
(its count and a digest of its entries, so that another split is refused),
every label must be in [0, C), every image must exist and be readable; a
problem is one `DatasetError` line naming the file (and line).  The checked
split is cached per domain as float32 arrays under `<data root>/cache/<name>/`,
stamped with the files' sizes and times, as CelebA's is.

Protocol v1, with the source of each value (LibMTL ``examples/office``):
224 x 224 input, the image resized whole (bilinear, as torchvision's
``Resize((224, 224))`` on a PIL image) and normalised with ImageNet's mean and
standard deviation; Adam, lr 1e-4, weight decay 1e-5, batch 64 per domain,
100 epochs; a ResNet-18 from ImageNet weights.  Here the backbone is
`resnet18-dilated` (the platform's ResNet-18; LibMTL's is not dilated and adds
a 512-unit hidden layer to its encoder), and LibMTL's choice of the test
result at the best validation epoch is not made: a job reports its last epoch.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from runners.benchmarks.base import BENCHMARKS, Batch, Benchmark, Protocol, Resources
from runners.benchmarks.npy_layout import DatasetError, cache_root, write_image_cache
from runners.multi_input import image_key
from runners.paths import data_root
from runners.tasks import Classification

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SPLITS = ("train", "test")
# Bump when the cache's format or the checks change: old caches are then ignored.
CACHE_FORMAT = 1


@dataclass(frozen=True)
class ListSplit:
    """What one of LibMTL's lists holds: its number of images and `entries_digest` of them."""

    count: int
    digest: str


def entries_digest(entries: list[tuple[str, int]]) -> str:
    """sha256 (16 hex digits) of a list's entries, one ``path label`` line each: the split, not
    the file's bytes (line endings and spacing do not matter)."""
    text = "".join(f"{path} {label}\n" for path, label in entries)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class Office(Benchmark):
    """An Office dataset: one classification task per domain, each with its own images."""

    multi_input = True

    def __init__(
        self,
        name: str,
        description: str,
        num_classes: int,
        root_env: str,
        lists: Mapping[str, Mapping[str, ListSplit]],
        protocols: dict[int, Protocol],
        *,
        check_digests: bool = True,
    ) -> None:
        self.name = name
        self.description = description
        self.num_classes = num_classes
        self.root_env = root_env
        # {domain: {split: what LibMTL's list holds}}; the tasks are the domains, in order.
        self.lists = lists
        self.tasks = tuple(Classification(d, num_classes=num_classes) for d in lists)
        self.protocols = protocols
        self.check_digests = check_digests
        for protocol in protocols.values():
            for split, total in (("train", protocol.train_size), ("test", protocol.test_size)):
                listed = sum(lists[d][split].count for d in lists)
                if listed != total:
                    raise ValueError(
                        f"{name} v{protocol.version}: {split}_size is {total}, the domains'"
                        f" lists hold {listed}"
                    )

    def root(self) -> Path:
        configured = os.environ.get(self.root_env)
        return Path(configured) if configured else data_root() / self.name

    def load(self, split: str, protocol: Protocol) -> Batch:
        """Per domain: `<domain>.image` (N_d, 3, S, S) channels_last over the cache, `<domain>`
        int64 (N_d,)."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")
        root = self.root()
        if not root.is_dir():
            raise DatasetError(
                f"{self.name}: data root {root} does not exist; expected the images and"
                f" LibMTL's lists {root}/<domain>_{{train,test}}.txt (or set {self.root_env})"
            )
        batch: Batch = {}
        for task in self.tasks:
            arrays = self.load_domain(root, task.name, split, protocol.image_size)
            batch[image_key(task.name)] = torch.from_numpy(arrays["image"]).permute(0, 3, 1, 2)
            batch[task.name] = torch.from_numpy(arrays["labels"])
        return batch

    def read_list(self, root: Path, domain: str, split: str) -> list[tuple[str, int]]:
        """The (path, label) entries of `<domain>_<split>.txt`, every line and LibMTL's split
        checked."""
        path = root / f"{domain}_{split}.txt"
        if not path.is_file():
            raise DatasetError(
                f"{self.name}: {path}: file not found (LibMTL's list,"
                f" examples/office/data_txt/{self.name}/{path.name})"
            )
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise DatasetError(f"{self.name}: {path}: not a readable text file ({e})") from None
        entries = []
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            fields = line.rsplit(None, 1)
            if len(fields) != 2 or not fields[1].lstrip("-").isdigit():
                raise DatasetError(
                    f"{self.name}: {path}:{number}: expected an image path and a class,"
                    f" found {line.strip()!r}"
                )
            label = int(fields[1])
            if not 0 <= label < self.num_classes:
                raise DatasetError(
                    f"{self.name}: {path}:{number}: class {label} is outside"
                    f" [0, {self.num_classes})"
                )
            entries.append((fields[0], label))
        expected = self.lists[domain][split]
        if len(entries) != expected.count:
            raise DatasetError(
                f"{self.name}: {path}: expected {expected.count} images (LibMTL's {domain}"
                f" {split} split), found {len(entries)}"
            )
        if self.check_digests and entries_digest(entries) != expected.digest:
            raise DatasetError(
                f"{self.name}: {path}: not LibMTL's {domain} {split} split (digest"
                f" {entries_digest(entries)}, expected {expected.digest})"
            )
        return entries

    def load_domain(self, root: Path, domain: str, split: str, size: int) -> dict[str, np.ndarray]:
        """`image` (N, size, size, 3) float32 and `labels` (N,) int64 of one domain, via the
        cache."""
        entries = self.read_list(root, domain, split)
        listing = root / f"{domain}_{split}.txt"
        files = []
        for number, (relative, _) in enumerate(entries, start=1):
            file = root / relative
            if not file.is_file():
                raise DatasetError(
                    f"{self.name}: {file}: file not found (listed in {listing}:{number})"
                )
            files.append(file)
        digest = hashlib.sha256(json.dumps([CACHE_FORMAT, str(root.resolve()), size]).encode())
        for file in [listing, *files]:
            info = file.stat()
            digest.update(f"{file}:{info.st_size}:{info.st_mtime_ns};".encode())
        prefix = f"{domain}-{split}-"
        directory = cache_root() / self.name / f"{prefix}{size}px-{digest.hexdigest()[:24]}"
        if not directory.is_dir():
            labels = np.asarray([label for _, label in entries], dtype=np.int64)
            write_image_cache(directory, prefix, files, labels, size, self.read_image)
        return {
            key: np.load(directory / f"{key}.npy", mmap_mode="c", allow_pickle=False)
            for key in ("image", "labels")
        }

    def read_image(self, path: Path, size: int) -> np.ndarray:
        """(size, size, 3) float32: the image resized whole, in [0, 1], ImageNet-normalised."""
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as image:
                resized = image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
        except (OSError, UnidentifiedImageError) as e:
            raise DatasetError(f"{self.name}: {path}: not a readable image ({e})") from None
        pixels = np.asarray(resized, dtype=np.float32) / 255.0
        mean = np.asarray(IMAGENET_MEAN, dtype=np.float32)
        return np.asarray((pixels - mean) / np.asarray(IMAGENET_STD, dtype=np.float32))


def _lists(
    table: Mapping[str, tuple[tuple[int, str], tuple[int, str]]],
) -> dict[str, dict[str, ListSplit]]:
    return {
        domain: {split: ListSplit(*entry) for split, entry in zip(SPLITS, entries, strict=True)}
        for domain, entries in table.items()
    }


# LibMTL's lists (4336804): {domain: ((train count, digest), (test count, digest))}.
OFFICE_31_LISTS = _lists(
    {
        "amazon": ((1680, "aef55224b4fad053"), (585, "13429a0a14d8e35d")),
        "dslr": ((287, "c669f2636d27bf2a"), (122, "b4769a765a31083b")),
        "webcam": ((466, "117417addef21e79"), (180, "5e0cd750cb090a76")),
    }
)
OFFICE_HOME_LISTS = _lists(
    {
        "Art": ((1435, "998309f57ee17997"), (527, "a37a26252832ba9a")),
        "Clipart": ((2596, "38b42c780827d514"), (923, "7ecc7f43cd594f3a")),
        "Product": ((2635, "d754516489f20a55"), (944, "600910868ec4e560")),
        "Real_World": ((2586, "bd9365b8e1171e21"), (925, "08e84d4c9a93273d")),
    }
)

LIBMTL_ADAM = {"name": "adam", "lr": 1e-4, "weight_decay": 1e-5}
# Every architecture at its defaults fits on Office-Home's 4 domains: PLE, the largest,
# has 56M parameters and needs 92 GFLOP per 224x224 image (hard sharing 11M, 18 GFLOP).
MAX_PARAMETERS = 80_000_000
MAX_FLOPS = 120_000_000_000


def office_protocol(lists: Mapping[str, Mapping[str, ListSplit]], description: str) -> Protocol:
    """LibMTL's Office protocol (see the module) for the domains of `lists`."""
    return Protocol(
        version=1,
        image_size=224,
        train_size=sum(d["train"].count for d in lists.values()),
        test_size=sum(d["test"].count for d in lists.values()),
        epochs=100,
        batch_size=64,
        seeds=(0, 1, 2),
        backbones=("resnet18-dilated",),
        pretrained_backbones=True,
        max_lr=0.1,
        max_parameters=MAX_PARAMETERS,
        max_flops=MAX_FLOPS,
        baseline_optimizer=LIBMTL_ADAM,
        resources=Resources(cpus=4, gpus=1),
        description=description,
    )


OFFICE_31 = BENCHMARKS.register("office-31")(
    Office(
        "office-31",
        "Office-31 (Saenko et al. 2010) in LibMTL's multi-input setting: 31-class object"
        " recognition in each of the amazon, dslr and webcam domains, each with its own images.",
        31,
        "MTLB_OFFICE31_ROOT",
        OFFICE_31_LISTS,
        {
            1: office_protocol(
                OFFICE_31_LISTS,
                "LibMTL's Office-31: amazon, dslr, webcam (2433 train / 887 test images, LibMTL's"
                " 60/20/20 lists), 224x224, ResNet-18 from ImageNet weights, Adam lr 1e-4,"
                " weight decay 1e-5, batch 64 per domain, 100 epochs, 3 seeds.",
            )
        },
    )
)

OFFICE_HOME = BENCHMARKS.register("office-home")(
    Office(
        "office-home",
        "Office-Home (Venkateswara et al. 2017) in LibMTL's multi-input setting: 65-class"
        " object recognition in each of the Art, Clipart, Product and Real_World domains.",
        65,
        "MTLB_OFFICEHOME_ROOT",
        OFFICE_HOME_LISTS,
        {
            1: office_protocol(
                OFFICE_HOME_LISTS,
                "LibMTL's Office-Home: Art, Clipart, Product, Real_World (9252 train / 3319 test"
                " images, LibMTL's 60/20/20 lists), 224x224, ResNet-18 from ImageNet weights,"
                " Adam lr 1e-4, weight decay 1e-5, batch 64 per domain, 100 epochs, 3 seeds.",
            )
        },
    )
)
