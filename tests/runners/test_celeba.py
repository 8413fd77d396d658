"""The `celeba` benchmark: the official files' format, their checks, the cache, a training run.

Fixtures are written in the release's format (178 x 218 JPEGs in
img_align_celeba/, list_attr_celeba.txt with its count and header,
list_eval_partition.txt) with a few images, and read through a copy of the
benchmark whose protocol has those split sizes; the copy replaces the
registered one only while a test runs (monkeypatch).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from runners.benchmarks import BENCHMARKS
from runners.benchmarks import celeba as celeba_module
from runners.benchmarks.celeba import ATTRIBUTE_NAMES, MEAN_RGB, PROTOCOL_V1, CelebA
from runners.benchmarks.npy_layout import DatasetError
from runners.train import train
from submissions.spec import validate
from submissions.submit import baseline_document

# Partition of each fixture image, in file order: 4 train, 2 validation, 3 test.
PARTITION = (0, 2, 0, 1, 0, 2, 1, 0, 2)
SMALL = dataclasses.replace(
    PROTOCOL_V1, train_size=4, test_size=3, epochs=1, batch_size=4, resources=PROTOCOL_V1.resources
)
# A solid colour survives JPEG and resizing to within a few grey levels.
TOLERANCE = 3 / 255


def colour(i: int) -> tuple[int, int, int]:
    return (20 * i + 30, 200 - 15 * i, 90 + 10 * i)


def write_release(root: Path, seed: int = 0) -> np.ndarray:
    """The fixture in the release's format; returns the (N, 40) values written, 1 or -1."""
    rng = np.random.default_rng(seed)
    values = rng.choice([-1, 1], size=(len(PARTITION), 40))
    (root / "img_align_celeba").mkdir(parents=True)
    names = [f"{i + 1:06d}.jpg" for i in range(len(PARTITION))]
    for i, name in enumerate(names):
        pixels = np.empty((218, 178, 3), dtype=np.uint8)
        pixels[:] = colour(i)
        if i == 0:  # top half white, bottom half black: rows stay rows
            pixels[:109], pixels[109:] = 255, 0
        Image.fromarray(pixels).save(root / "img_align_celeba" / name, quality=95)
    # The release pads values to a fixed width (two spaces before a 1).
    rows = [
        f"{n} " + " ".join(f"{v:2d}" for v in row) for n, row in zip(names, values, strict=True)
    ]
    header = " ".join(ATTRIBUTE_NAMES) + " "
    (root / "list_attr_celeba.txt").write_text("\n".join([str(len(names)), header, *rows]) + "\n")
    partition = [f"{n} {p}" for n, p in zip(names, PARTITION, strict=True)]
    (root / "list_eval_partition.txt").write_text("\n".join(partition) + "\n")
    return values


@pytest.fixture
def release(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> tuple[CelebA, Path, np.ndarray]:
    root = tmp_path / "celeba"
    values = write_release(root)
    monkeypatch.setenv("MTLB_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.setenv("MTLB_CELEBA_ROOT", str(root))
    benchmark = CelebA("celeba", "test copy", {1: SMALL})
    monkeypatch.setitem(BENCHMARKS._entries, "celeba", benchmark)
    return benchmark, root, values


def test_splits_are_the_official_partitions_with_their_labels_and_images(release: tuple) -> None:
    benchmark, _, values = release
    for split, partition in (("train", 0), ("test", 2)):
        batch = benchmark.load(split, SMALL)
        chosen = [i for i, p in enumerate(PARTITION) if p == partition]
        image = batch["image"]
        assert image.shape == (len(chosen), 3, 64, 64) and image.dtype == torch.float32
        assert image.is_contiguous(memory_format=torch.channels_last)
        for k, name in enumerate(ATTRIBUTE_NAMES):
            expected = (values[chosen, k] + 1) // 2  # 1 -> 1, -1 -> 0
            assert batch[name].dtype == torch.int64
            assert batch[name].tolist() == expected.tolist(), (split, name)
        for row, i in enumerate(chosen):
            if i == 0:
                continue
            want = (np.asarray(colour(i)) - np.asarray(MEAN_RGB)) / 255
            got = image[row].mean(dim=(1, 2)).numpy()
            assert np.abs(got - want).max() <= TOLERANCE, (split, i)
    first = benchmark.load("train", SMALL)["image"][0]  # image 000001.jpg
    white, black = (255 - np.asarray(MEAN_RGB)) / 255, -np.asarray(MEAN_RGB) / 255
    assert np.abs(first[:, 0, :].mean(dim=1).numpy() - white).max() <= TOLERANCE
    assert np.abs(first[:, 63, :].mean(dim=1).numpy() - black).max() <= TOLERANCE


def test_the_checked_split_is_cached_and_rebuilt_when_a_file_changes(
    release: tuple, monkeypatch: pytest.MonkeyPatch
) -> None:
    benchmark, root, _ = release
    before = benchmark.load("test", SMALL)["image"].clone()
    read = celeba_module.read_image

    def refuse(path: Path, size: int) -> np.ndarray:
        raise AssertionError(f"decoded {path} again")

    monkeypatch.setattr(celeba_module, "read_image", refuse)
    assert torch.equal(benchmark.load("test", SMALL)["image"], before)
    # A test image rewritten in another colour: the stamp changes, the split is decoded again.
    path = root / "img_align_celeba" / "000002.jpg"
    Image.fromarray(np.full((218, 178, 3), 250, dtype=np.uint8)).save(path, quality=95)
    monkeypatch.setattr(celeba_module, "read_image", read)
    after = benchmark.load("test", SMALL)["image"]
    assert not torch.equal(after[0], before[0]) and torch.equal(after[1:], before[1:])
    assert len(list((root.parent / "data" / "cache" / "celeba").glob("test-*"))) == 1


def _replace_line(path: Path, number: int, text: str) -> None:
    lines = path.read_text().splitlines()
    lines[number - 1] = text
    path.write_text("\n".join(lines) + "\n")


def _break(root: Path, how: str) -> str:
    """Damage the fixture; return what the error must name."""
    attributes, partition = root / "list_attr_celeba.txt", root / "list_eval_partition.txt"
    images = root / "img_align_celeba"
    if how == "no-root":
        for path in [*images.iterdir(), attributes, partition]:
            path.unlink()
        images.rmdir()
        root.rmdir()
        return f"data root {root} does not exist"
    if how == "no-attribute-file":
        attributes.unlink()
        return f"{attributes}: file not found"
    if how == "wrong-header":
        _replace_line(attributes, 2, "Smiling Male")
        return f"{attributes}:2: expected the 40 attribute names"
    if how == "bad-value":
        _replace_line(attributes, 5, "000003.jpg " + " ".join(["1"] * 39 + ["0"]))
        return f"{attributes}:5: expected a file name and 40 values 1 or -1"
    if how == "count":
        _replace_line(attributes, 1, "10")
        return "line 1 says 10 images, found 9 lines"
    if how == "partition-order":
        _replace_line(partition, 2, "000009.jpg 2")
        return f"{partition}:2: expected 000002.jpg"
    if how == "split-size":
        _replace_line(partition, 4, "000004.jpg 0")  # a fifth train image
        return "expected 4 images in partition 0 (the protocol's train split), found 5"
    if how == "missing-image":
        (images / "000005.jpg").unlink()
        return f"{images / '000005.jpg'}: file not found"
    if how == "wrong-size":
        Image.fromarray(np.zeros((64, 64, 3), dtype=np.uint8)).save(images / "000003.jpg")
        return f"{images / '000003.jpg'}: expected an aligned image of 178 x 218, found 64 x 64"
    assert how == "not-an-image"
    (images / "000001.jpg").write_bytes(b"not a jpeg")
    return f"{images / '000001.jpg'}: not a readable image"


@pytest.mark.parametrize(
    "how",
    [
        "no-root",
        "no-attribute-file",
        "wrong-header",
        "bad-value",
        "count",
        "partition-order",
        "split-size",
        "missing-image",
        "wrong-size",
        "not-an-image",
    ],
)
def test_a_damaged_release_is_one_line_naming_the_file(release: tuple, how: str) -> None:
    benchmark, root, _ = release
    expected = _break(root, how)
    with pytest.raises(DatasetError) as error:
        benchmark.load("train", SMALL)
    message = str(error.value)
    assert message.startswith("celeba: ") and "\n" not in message
    assert expected in message, message
    # Nothing half-written is left for the next job to read.
    cache = root.parent / "data" / "cache" / "celeba"
    assert not cache.exists() or not any(cache.iterdir())


def test_tasks_metric_directions_protocol_and_baseline() -> None:
    registered = BENCHMARKS.get("celeba")
    assert [t.name for t in registered.tasks] == list(ATTRIBUTE_NAMES) and len(
        ATTRIBUTE_NAMES
    ) == 40
    assert registered.metric_directions == {
        name: {"accuracy": True, "balanced_accuracy": True} for name in ATTRIBUTE_NAMES
    }
    protocol = registered.protocol(1)
    assert (protocol.train_size, protocol.test_size, protocol.image_size) == (162_770, 19_962, 64)
    checked, problems = validate(baseline_document("celeba", 1, "small-cnn"))  # needs no data
    assert problems == [] and checked is not None


def test_hard_sharing_trains_on_the_fixture(release: tuple) -> None:
    torch.set_num_threads(1)
    spec = {
        "benchmark": "celeba",
        "protocol_version": 1,
        "architecture": {"name": "hard-sharing", "backbone": "small-cnn"},
        "weighting": {"name": "equal"},
        "optimizer": {"name": "adam", "lr": 3e-4, "weight_decay": 0.0},
    }
    metrics = train(spec, seed=0).metrics
    assert list(metrics) == list(ATTRIBUTE_NAMES)
    for values in metrics.values():
        assert set(values) == {"accuracy", "balanced_accuracy"}
        assert all(math.isfinite(v) and 0 <= v <= 1 for v in values.values())
        # Three test images: accuracy is a multiple of 1/3.
        assert values["accuracy"] * 3 == pytest.approx(round(values["accuracy"] * 3), abs=1e-9)
