"""`office-31` and `office-home`: LibMTL's list format, the checks, the cache, a training run.

Fixtures are written in the release's layout (JPEGs under <domain>/images/<class>/)
with LibMTL's list files (``<domain>_<split>.txt``: ``path label``), a few
images per domain, and read through a copy of the benchmark whose lists have
those counts (digests unchecked: LibMTL's digests are of its real lists).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from runners.benchmarks import BENCHMARKS
from runners.benchmarks.npy_layout import DatasetError
from runners.benchmarks.office import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    OFFICE_31,
    OFFICE_HOME,
    ListSplit,
    Office,
    entries_digest,
)
from runners.multi_input import image_key
from runners.train import train

DOMAINS = ("amazon", "dslr", "webcam")
# Train / test images of each fixture domain: the sizes differ, as Office-31's do.
COUNTS = {"amazon": (3, 2), "dslr": (2, 1), "webcam": (1, 1)}
LISTS = {d: {"train": ListSplit(n, ""), "test": ListSplit(m, "")} for d, (n, m) in COUNTS.items()}
PROTOCOL = dataclasses.replace(
    OFFICE_31.protocol(1),
    image_size=16,
    train_size=6,
    test_size=4,
    epochs=1,
    batch_size=2,
    backbones=("small-cnn",),
    pretrained_backbones=False,
)
SMALL = Office(
    "test-office-31", "Office-31's format, a few images", 31, "MTLB_TEST_OFFICE_ROOT", LISTS,
    {1: PROTOCOL}, check_digests=False,
)  # fmt: skip


def colour(domain: int, i: int) -> tuple[int, int, int]:
    return (40 * domain + 30, 60 + 50 * i, 200 - 30 * i)


def write_release(root: Path) -> dict[str, list[int]]:
    """Solid-colour JPEGs and LibMTL's lists; returns each domain's train labels."""
    labels = {}
    for d, domain in enumerate(DOMAINS):
        for split, count in zip(("train", "test"), COUNTS[domain], strict=True):
            lines = []
            for i in range(count):
                label = (7 * d + 3 * i + (split == "test")) % 31
                relative = f"{domain}/images/class_{label}/frame_{split}_{i:04d}.jpg"
                (root / relative).parent.mkdir(parents=True, exist_ok=True)
                pixels = np.empty((40, 30, 3), dtype=np.uint8)  # not square: resized whole
                pixels[:] = colour(d, i)
                Image.fromarray(pixels).save(root / relative, quality=95)
                lines.append(f"{relative} {label}")
                if split == "train":
                    labels.setdefault(domain, []).append(label)
            (root / f"{domain}_{split}.txt").write_text("\n".join(lines) + "\n")
    return labels


@pytest.fixture
def release(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "office-31"
    monkeypatch.setenv("MTLB_TEST_OFFICE_ROOT", str(root))
    monkeypatch.setenv("MTLB_DATA_ROOT", str(tmp_path / "data"))
    write_release(root)
    return root


def test_the_registered_lists_are_libmtls_split() -> None:
    assert OFFICE_31.protocol(1).train_size == 1680 + 287 + 466
    assert OFFICE_HOME.protocol(1).test_size == 527 + 923 + 944 + 925
    assert [t.name for t in OFFICE_HOME.tasks] == ["Art", "Clipart", "Product", "Real_World"]
    assert {t.out_channels for t in OFFICE_31.tasks} == {31}
    assert entries_digest([("a/b.jpg", 0)]) == entries_digest([("a/b.jpg", 0)])
    assert entries_digest([("a/b.jpg", 0)]) != entries_digest([("a/b.jpg", 1)])


def test_load_gives_each_domain_its_own_images_and_labels(release: Path) -> None:
    labels = write_release(release)
    batch = SMALL.load("train", PROTOCOL)
    assert sorted(batch) == sorted([*DOMAINS, *(image_key(d) for d in DOMAINS)])
    for d, domain in enumerate(DOMAINS):
        images = batch[image_key(domain)]
        assert images.shape == (COUNTS[domain][0], 3, 16, 16) and images.dtype == torch.float32
        assert batch[domain].tolist() == labels[domain]
        # A solid colour, resized, /255 and ImageNet-normalised (JPEG keeps it within 3 levels).
        for i in range(COUNTS[domain][0]):
            expected = (np.asarray(colour(d, i)) / 255 - IMAGENET_MEAN) / IMAGENET_STD
            got = images[i].mean(dim=(1, 2)).numpy()
            np.testing.assert_allclose(got, expected, atol=3 / 255 / min(IMAGENET_STD))
    test = SMALL.load("test", PROTOCOL)
    assert [len(test[d]) for d in DOMAINS] == [2, 1, 1]


def test_a_job_trains_and_is_evaluated_on_each_domains_test_images(
    release: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(BENCHMARKS._entries, SMALL.name, SMALL)
    torch.set_num_threads(1)
    spec = {
        "benchmark": SMALL.name,
        "protocol_version": 1,
        "architecture": {"name": "hard-sharing", "backbone": "small-cnn"},
        "weighting": {"name": "equal"},
        "optimizer": {"name": "adam", "lr": 1e-4, "weight_decay": 1e-5},
    }
    result = train(spec, seed=0)
    # Accuracy over 2, 1 and 1 test images: multiples of 1/2, 1 and 1.
    assert result.metrics["amazon"]["accuracy"] in (0.0, 0.5, 1.0)
    assert result.metrics["dslr"]["accuracy"] in (0.0, 1.0)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (
            lambda root: (root / "dslr_train.txt").unlink(),
            r"dslr_train.txt: file not found \(LibMTL's list",
        ),
        (
            lambda root: next((root / "webcam").rglob("*train*.jpg")).unlink(),
            r"frame_train_0000.jpg: file not found \(listed in .*webcam_train.txt:1\)",
        ),
        (
            lambda root: (root / "amazon_train.txt").write_text(
                (root / "amazon_train.txt").read_text().replace(" 3\n", " 31\n")
            ),
            r"amazon_train.txt:2: class 31 is outside \[0, 31\)",
        ),
        (
            lambda root: (root / "amazon_train.txt").write_text("amazon/x.jpg\n"),
            r"amazon_train.txt:1: expected an image path and a class, found 'amazon/x.jpg'",
        ),
        (
            lambda root: (root / "dslr_train.txt").write_text(
                (root / "dslr_train.txt").read_text().splitlines()[0] + "\n"
            ),
            r"dslr_train.txt: expected 2 images \(LibMTL's dslr train split\), found 1",
        ),
        (
            lambda root: next((root / "amazon").rglob("*train_0001.jpg")).write_bytes(
                b"not a jpeg"
            ),
            r"frame_train_0001.jpg: not a readable image",
        ),
    ],
    ids=[
        "missing-list",
        "missing-image",
        "label-out-of-range",
        "malformed-line",
        "count",
        "corrupt-image",
    ],
)
def test_a_broken_release_is_one_line_naming_the_file(release: Path, damage, message: str) -> None:  # type: ignore[no-untyped-def]
    damage(release)
    with pytest.raises(DatasetError, match=message) as raised:
        SMALL.load("train", PROTOCOL)
    assert "\n" not in str(raised.value)


def test_another_split_than_libmtls_is_refused(
    release: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    checked = Office("test-office-31", "", 31, "MTLB_TEST_OFFICE_ROOT", LISTS, {1: PROTOCOL})
    with pytest.raises(
        DatasetError, match=r"amazon_train.txt: not LibMTL's amazon train split \(digest"
    ):
        checked.load("train", PROTOCOL)


def test_a_missing_root_names_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MTLB_TEST_OFFICE_ROOT", str(tmp_path / "nowhere"))
    with pytest.raises(DatasetError, match=r"data root .*nowhere does not exist"):
        SMALL.load("test", PROTOCOL)
