"""The real benchmarks (`nyuv2`, `cityscapes`): loaders, checks, cache, augmentation, training.

Fixtures are written in the real on-disk format (mtan's preprocessed `.npy`
files: float64 images in [0, 1], float labels with -1, depth H x W x 1,
normals H x W x 3) at a small resolution, and read through a copy of the
benchmark whose protocol has that resolution and a few images.  The copy
replaces the registered one only while a test runs (monkeypatch).
"""

from __future__ import annotations

import dataclasses
import math
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from runners.benchmarks import BENCHMARKS
from runners.benchmarks import cityscapes as cityscapes_module
from runners.benchmarks import nyuv2 as nyuv2_module
from runners.benchmarks.npy_layout import DatasetError, Draw, NpyBenchmark, scale_crop_flip
from runners.train import train
from submissions.spec import validate
from submissions.submit import baseline_document

H, W = 32, 64  # SegNet pools five times: both divisible by 32
COUNTS = {"train": 4, "val": 3}
IGNORE = 255

NYU_SMALL = dataclasses.replace(
    nyuv2_module.PROTOCOL_V1,
    image_size=H,
    image_shape=(H, W),
    train_size=COUNTS["train"],
    test_size=COUNTS["val"],
    epochs=1,
    batch_size=4,
    batch_sizes={"segnet": 2},
    pretrained_backbones=False,
    resources=nyuv2_module.PROTOCOL_V1.resources,
)
CITY_SMALL = dataclasses.replace(
    cityscapes_module.PROTOCOL_V1,
    image_size=H,
    image_shape=(H, W),
    train_size=COUNTS["train"],
    test_size=COUNTS["val"],
    epochs=1,
    pretrained_backbones=False,
)


def small_nyuv2() -> NpyBenchmark:
    return NpyBenchmark(
        "nyuv2",
        "test copy",
        nyuv2_module.TASKS,
        nyuv2_module.FOLDERS,
        nyuv2_module.ROOT_ENV,
        {1: NYU_SMALL},
    )


def small_cityscapes() -> NpyBenchmark:
    return NpyBenchmark(
        "cityscapes",
        "test copy",
        cityscapes_module.TASKS,
        cityscapes_module.FOLDERS,
        cityscapes_module.ROOT_ENV,
        {1: CITY_SMALL},
    )


def sample(rng: np.random.Generator, classes: int) -> dict[str, np.ndarray]:
    """One image's files as mtan's preprocessing stores them (float64)."""
    label = rng.integers(-1, classes, size=(H, W)).astype(np.float64)
    depth = rng.uniform(0.5, 10.0, size=(H, W, 1))
    depth[0, :3] = 0.0  # unknown depth
    normal = rng.normal(size=(H, W, 3))
    normal /= np.linalg.norm(normal, axis=2, keepdims=True)
    normal[1, :2] = 0.0  # unknown normal
    return {
        "image": rng.uniform(0.0, 1.0, size=(H, W, 3)),
        "label": label,
        "label_7": label,
        "depth": depth,
        "normal": normal,
    }


def write_dataset(
    root: Path, folders: tuple[str, ...], classes: int, seed: int = 0
) -> dict[str, dict[str, list[np.ndarray]]]:
    """Files root/{train,val}/<folder>/<i>.npy; returns what was written, per split and folder."""
    rng = np.random.default_rng(seed)
    written: dict[str, dict[str, list[np.ndarray]]] = {}
    for split, count in COUNTS.items():
        written[split] = {f: [] for f in folders}
        for folder in folders:
            (root / split / folder).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            arrays = sample(rng, classes)
            for folder in folders:
                np.save(root / split / folder / f"{i}.npy", arrays[folder])
                written[split][folder].append(arrays[folder])
    return written


NYU_FOLDERS = ("image", "label", "depth", "normal")


@pytest.fixture
def nyu(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> tuple[NpyBenchmark, Path, Any]:
    """A small nyuv2 in the real format, registered in place of the real one; its own cache."""
    root = tmp_path / "nyuv2"
    written = write_dataset(root, NYU_FOLDERS, 13)
    monkeypatch.setenv("MTLB_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.setenv("MTLB_NYUV2_ROOT", str(root))
    benchmark = small_nyuv2()
    monkeypatch.setitem(BENCHMARKS._entries, "nyuv2", benchmark)
    return benchmark, root, written


def expected_labels(stored: list[np.ndarray]) -> torch.Tensor:
    labels = torch.from_numpy(np.stack(stored)).long()
    return torch.where(labels == -1, IGNORE, labels)


# ----------------------------------------------------------------------------- loading
def test_nyuv2_round_trips_and_images_are_channels_last(nyu: Any) -> None:
    benchmark, _, written = nyu
    for split, folder in (("train", "train"), ("test", "val")):
        batch = benchmark.load(split, NYU_SMALL)
        stored = written[folder]
        n = COUNTS[folder]
        image = torch.from_numpy(np.stack(stored["image"])).float().permute(0, 3, 1, 2)
        assert batch["image"].shape == (n, 3, H, W) and batch["image"].dtype == torch.float32
        assert torch.equal(batch["image"], image)
        assert batch["image"].is_contiguous(memory_format=torch.channels_last)
        assert batch["segmentation"].dtype == torch.int64
        assert torch.equal(batch["segmentation"], expected_labels(stored["label"]))
        depth = torch.from_numpy(np.stack(stored["depth"])).float().permute(0, 3, 1, 2)
        assert batch["depth"].shape == (n, 1, H, W) and torch.equal(batch["depth"], depth)
        normal = torch.from_numpy(np.stack(stored["normal"])).float().permute(0, 3, 1, 2)
        assert batch["normal"].shape == (n, 3, H, W) and torch.equal(batch["normal"], normal)


def test_cityscapes_round_trips(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    root = tmp_path / "cityscapes"
    written = write_dataset(root, ("image", "label_7", "depth"), 7)
    monkeypatch.setenv("MTLB_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.setenv("MTLB_CITYSCAPES_ROOT", str(root))
    batch = small_cityscapes().load("test", CITY_SMALL)
    assert set(batch) == {"image", "segmentation", "depth"}
    assert torch.equal(batch["segmentation"], expected_labels(written["val"]["label_7"]))
    assert int(batch["segmentation"].max()) == IGNORE and int(batch["segmentation"].min()) == 0
    depth = torch.from_numpy(np.stack(written["val"]["depth"])).float().permute(0, 3, 1, 2)
    assert torch.equal(batch["depth"], depth)


def test_the_root_defaults_to_the_data_root(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("MTLB_NYUV2_ROOT", raising=False)
    monkeypatch.setenv("MTLB_DATA_ROOT", str(tmp_path))
    assert small_nyuv2().root() == tmp_path / "nyuv2"
    monkeypatch.setenv("MTLB_NYUV2_ROOT", "/elsewhere/nyu")
    assert small_nyuv2().root() == Path("/elsewhere/nyu")


def test_a_second_load_reads_the_cache_and_a_changed_file_invalidates_it(
    nyu: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    benchmark, root, _ = nyu
    first = benchmark.load("train", NYU_SMALL)
    caches = list((tmp_path / "data" / "cache" / "nyuv2").iterdir())
    assert [c.name.split("-")[0] for c in caches] == ["train"]

    import runners.benchmarks.npy_layout as layout

    def no_reads(*args: Any) -> None:
        raise AssertionError("a warm load must not read the source files")

    with monkeypatch.context() as m:
        m.setattr(layout, "read_file", no_reads)
        again = benchmark.load("train", NYU_SMALL)
    assert all(torch.equal(first[k], again[k]) for k in first)

    # A changed source file (new size or mtime) gives a new cache; the old one is removed.
    path = root / "train" / "depth" / "1.npy"
    np.save(path, np.full((H, W, 1), 7.0))
    os.utime(path, ns=(1, 1))
    fresh = benchmark.load("train", NYU_SMALL)
    assert torch.equal(fresh["depth"][1], torch.full((1, H, W), 7.0))
    assert [c.name for c in (tmp_path / "data" / "cache" / "nyuv2").iterdir()] != [
        c.name for c in caches
    ]
    assert len(list((tmp_path / "data" / "cache" / "nyuv2").iterdir())) == 1


def corrupt(root: Path, problem: str) -> str:
    """Break the fixture in one way; return the exact message the loader must give."""
    train = root / "train"
    if problem == "missing root":
        missing = root.parent / "absent"
        os.environ["MTLB_NYUV2_ROOT"] = str(missing)
        return (
            f"nyuv2: data root {missing} does not exist; expected the preprocessed layout of"
            f" mtan: {missing}/{{train,val}}/{{image,label,depth,normal}}/<i>.npy"
        )
    if problem == "missing folder":
        for p in (train / "normal").iterdir():
            p.unlink()
        (train / "normal").rmdir()
        return (
            f"nyuv2: {train / 'normal'}: folder not found; expected 4 files 0.npy to 3.npy"
            f" ({root}/{{train,val}}/{{image,label,depth,normal}}/<i>.npy)"
        )
    if problem == "missing file":
        (train / "depth" / "2.npy").unlink()
        return (
            f"nyuv2: {train / 'depth' / '2.npy'}: file not found"
            f" (1 of 0.npy to 3.npy missing in {train / 'depth'})"
        )
    if problem == "extra file":
        np.save(train / "image" / "4.npy", np.zeros((H, W, 3)))
        return (
            f"nyuv2: {train / 'image'}: expected 4 .npy files (the protocol's train split), found 5"
        )
    path = train / {
        "shape": "depth",
        "dtype": "image",
        "label": "label",
        "fractional label": "label",
    }.get(problem, "normal")
    path = path / "3.npy"
    if problem == "shape":
        np.save(path, np.ones((H, W)))
        return f"nyuv2: {path}: expected shape ({H}, {W}, 1), found ({H}, {W})"
    if problem == "dtype":
        np.save(path, np.zeros((H, W, 3), dtype=np.uint8))
        return f"nyuv2: {path}: expected dtype float32 or float64, found uint8"
    if problem == "label":
        label = np.zeros((H, W))
        label[5, 5] = 13.0
        np.save(path, label)
        return f"nyuv2: {path}: expected labels in [-1, 13) (-1: unlabelled), found 0 to 13"
    if problem == "fractional label":
        np.save(path, np.full((H, W), 0.5))
        return f"nyuv2: {path}: expected integer labels, found fractional values"
    if problem == "image range":
        path = train / "image" / "3.npy"
        np.save(path, np.full((H, W, 3), 255.0))
        return f"nyuv2: {path}: expected values in [0, 1], found 255 to 255"
    if problem == "nan normal":
        normal = np.zeros((H, W, 3))
        normal[0, 0, 0] = np.nan
        np.save(path, normal)
        return f"nyuv2: {path}: expected finite values, found NaN or infinity"
    assert problem == "pickle"
    path.write_bytes(pickle.dumps([1, 2]))
    return f"nyuv2: {path}: not a readable .npy array ("


PROBLEMS = [
    "missing root",
    "missing folder",
    "missing file",
    "extra file",
    "shape",
    "dtype",
    "label",
    "fractional label",
    "image range",
    "nan normal",
    "pickle",
]


@pytest.mark.parametrize("problem", PROBLEMS)
def test_a_broken_dataset_names_the_file_and_what_was_expected(
    nyu: Any, problem: str, tmp_path: Path
) -> None:
    benchmark, root, _ = nyu
    message = corrupt(root, problem)
    with pytest.raises(DatasetError) as error:
        benchmark.load("train", NYU_SMALL)
    assert "\n" not in str(error.value)
    if problem == "pickle":
        assert str(error.value).startswith(message)
    else:
        assert str(error.value) == message
    # Nothing half-written is left behind: no cache, no temporary folder.
    cache = tmp_path / "data" / "cache" / "nyuv2"
    assert not cache.exists() or list(cache.iterdir()) == []


# ------------------------------------------------------------------------ augmentation
def mtan_scale_crop_flip(
    image: torch.Tensor,
    label: torch.Tensor,
    depth: torch.Tensor,
    normal: torch.Tensor,
    d: Draw,
) -> tuple[torch.Tensor, ...]:
    """One sample as mtan/CAGrad/Nash-MTL's RandomScaleCrop and flip do it (F.interpolate)."""
    height, width = image.shape[-2:]
    h, w = int(height / d.scale), int(width / d.scale)
    i, j = d.top, d.left
    img = F.interpolate(
        image[None, :, i : i + h, j : j + w], (height, width), mode="bilinear", align_corners=True
    )[0]
    lab = F.interpolate(
        label[None, None, i : i + h, j : j + w].float(), (height, width), mode="nearest"
    )[0, 0].long()
    dep = F.interpolate(depth[None, :, i : i + h, j : j + w], (height, width), mode="nearest")[0]
    nor = F.interpolate(
        normal[None, :, i : i + h, j : j + w], (height, width), mode="bilinear", align_corners=True
    )[0]
    dep = dep / d.scale
    if d.flip:
        img, lab, dep, nor = img.flip(2), lab.flip(1), dep.flip(2), nor.flip(2).clone()
        nor[0] = -nor[0]
    return img, lab, dep, nor


def random_batch(b: int, height: int, width: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    normal = F.normalize(torch.randn(b, 3, height, width, generator=g), dim=1)
    return {
        "image": torch.rand(b, 3, height, width, generator=g),
        "segmentation": torch.randint(0, 13, (b, height, width), generator=g),
        "depth": torch.rand(b, 1, height, width, generator=g) * 10,
        "normal": normal,
    }


DRAWS = [
    Draw(1.0, 0, 0, False),
    Draw(1.0, 0, 0, True),
    Draw(1.2, 7, 11, False),
    Draw(1.5, 16, 21, True),
    Draw(1.5, 0, 0, False),
    Draw(1.2, 8, 11, True),
]


def test_augmentation_matches_the_reference_per_sample() -> None:
    height, width = 48, 64
    batch = random_batch(len(DRAWS), height, width)
    out = scale_crop_flip(batch, torch.Generator(), draws=DRAWS)
    for k, d in enumerate(DRAWS):
        img, lab, dep, nor = mtan_scale_crop_flip(
            batch["image"][k], batch["segmentation"][k], batch["depth"][k], batch["normal"][k], d
        )
        # Bilinear: float32 arithmetic in another order; nearest: the same pixels exactly.
        torch.testing.assert_close(out["image"][k], img, rtol=0, atol=1e-5)
        torch.testing.assert_close(out["normal"][k], nor, rtol=0, atol=1e-5)
        assert torch.equal(out["segmentation"][k], lab)
        assert torch.equal(out["depth"][k], dep)
    assert out["segmentation"].dtype == torch.int64
    assert out["image"].is_contiguous(memory_format=torch.channels_last)


def test_depth_is_divided_by_the_scale_and_a_flip_negates_normal_x() -> None:
    b = random_batch(3, 48, 64)
    b["depth"] = torch.full_like(b["depth"], 3.0)
    draws = [Draw(1.0, 0, 0, True), Draw(1.2, 2, 3, False), Draw(1.5, 1, 1, False)]
    out = scale_crop_flip(b, torch.Generator(), draws=draws)
    for k, s in enumerate((1.0, 1.2, 1.5)):
        assert torch.allclose(out["depth"][k], torch.tensor(3.0 / s))
    # Scale 1 and a flip: a mirror image, the normal's x component negated, y and z kept.
    assert torch.equal(out["image"][0], b["image"][0].flip(2))
    assert torch.equal(out["normal"][0, 0], -b["normal"][0, 0].flip(1))
    assert torch.equal(out["normal"][0, 1:], b["normal"][0, 1:].flip(2))
    assert torch.equal(out["segmentation"][0], b["segmentation"][0].flip(1))


def test_labels_stay_integers_with_their_ignored_pixels() -> None:
    b = random_batch(4, 48, 64)
    b["segmentation"][:, ::3] = IGNORE
    out = scale_crop_flip(b, torch.Generator().manual_seed(1))
    assert out["segmentation"].dtype == torch.int64
    assert set(out["segmentation"].unique().tolist()) <= set(range(13)) | {IGNORE}
    assert (out["segmentation"] == IGNORE).any()


def test_augmentation_is_deterministic_for_a_seed_and_draws_every_choice() -> None:
    b = random_batch(2, 48, 64)
    one = scale_crop_flip(b, torch.Generator().manual_seed(5))
    two = scale_crop_flip(b, torch.Generator().manual_seed(5))
    other = scale_crop_flip(b, torch.Generator().manual_seed(6))
    assert all(torch.equal(one[k], two[k]) for k in one)
    assert not all(torch.equal(one[k], other[k]) for k in one)

    from runners.benchmarks.npy_layout import SCALES, draw

    draws = draw(600, 288, 384, torch.Generator().manual_seed(0), SCALES)
    assert {d.scale for d in draws} == set(SCALES)
    assert 240 < sum(d.flip for d in draws) < 360  # p = 1/2: 300 +- 2.5 sigma
    for d in draws:
        h, w = int(288 / d.scale), int(384 / d.scale)
        assert 0 <= d.top <= 288 - h and 0 <= d.left <= 384 - w
    # Every corner position is reachable: both ends of the range occur for scale 1.5.
    tops = {d.top for d in draws if d.scale == 1.5}
    assert min(tops) <= 5 and max(tops) >= 96 - 5


# ---------------------------------------------------------------------------- protocol
def test_the_registered_protocols_are_those_of_the_papers() -> None:
    nyu = BENCHMARKS.get("nyuv2").protocol(1)
    assert (nyu.height_width, nyu.train_size, nyu.test_size, nyu.epochs) == (
        (288, 384),
        795,
        654,
        200,
    )
    assert (nyu.batch_size_for("segnet"), nyu.batch_size_for("resnet50-dilated")) == (2, 8)
    assert nyu.pretrained_for("resnet50-dilated") and not nyu.pretrained_for("segnet")
    assert nyu.augmentation and nyu.baseline_optimizer["lr"] == 1e-4
    assert [t.name for t in BENCHMARKS.get("nyuv2").tasks] == ["segmentation", "depth", "normal"]
    city = BENCHMARKS.get("cityscapes").protocol(1)
    assert (city.height_width, city.train_size, city.test_size) == ((128, 256), 2975, 500)
    assert (city.batch_size_for("segnet"), city.batch_size_for("resnet50-dilated")) == (8, 64)
    assert BENCHMARKS.get("cityscapes").task("segmentation").out_channels == 7
    # A square protocol without per-backbone sizes reads as before.
    scenes = BENCHMARKS.get("synthetic-scenes").protocol(1)
    assert scenes.height_width == (64, 64) and scenes.batch_size_for("small-cnn") == 32


@pytest.mark.parametrize("backbone", ["segnet", "resnet50-dilated"])
def test_the_baseline_uses_the_protocols_step_schedule(backbone: str) -> None:
    document = baseline_document("nyuv2", 1, backbone)
    assert document["scheduler"] == {"name": "step", "step_size": 100, "gamma": 0.5}
    spec, problems = validate(document)
    assert problems == [] and spec is not None


# ---------------------------------------------------------------------------- training
def segnet_spec(weighting: str) -> dict[str, Any]:
    """Hard sharing on a narrow SegNet under nyuv2 v1 (augmented training batches)."""
    return {
        "benchmark": "nyuv2",
        "protocol_version": 1,
        "architecture": {
            "name": "hard-sharing",
            "backbone": {"name": "segnet", "width_multiplier": 0.125},
        },
        "weighting": {"name": weighting},
        "optimizer": {"name": "adam", "lr": 1e-4, "weight_decay": 0.0},
        "scheduler": {"name": "step", "step_size": 100, "gamma": 0.5},
    }


def test_a_seed_fixes_the_augmentation_draws_whatever_the_method(
    nyu: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Common random numbers: PCGrad draws from the global generator every step, and the
    # augmentation comes from the job's own, so both runs see the same augmented batches.
    benchmark, _, _ = nyu
    torch.set_num_threads(1)
    drawn: list[torch.Tensor] = []
    augment = benchmark.augment

    def spy(batch: dict[str, torch.Tensor], generator: torch.Generator) -> Any:
        out = augment(batch, generator)
        drawn.append(torch.cat([out["image"].flatten(), out["depth"].flatten()]))
        return out

    monkeypatch.setattr(benchmark, "augment", spy)
    train(segnet_spec("equal"), seed=0)
    equal = list(drawn)
    drawn.clear()
    train(segnet_spec("pcgrad"), seed=0)
    assert len(equal) == len(drawn) == 2
    assert all(torch.equal(a, b) for a, b in zip(equal, drawn, strict=True))
    drawn.clear()
    train(segnet_spec("equal"), seed=1)
    assert not all(torch.equal(a, b) for a, b in zip(equal, drawn, strict=True))


def test_one_epoch_of_hard_sharing_segnet_trains_on_the_fixtures(
    nyu: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    benchmark, _, _ = nyu
    torch.set_num_threads(1)
    seen: list[tuple[int, ...]] = []
    augment = benchmark.augment

    def spy(batch: dict[str, torch.Tensor], generator: torch.Generator) -> Any:
        seen.append(tuple(batch["image"].shape))
        return augment(batch, generator)

    monkeypatch.setattr(benchmark, "augment", spy)
    spec = segnet_spec("equal")
    result = train(spec, seed=0)
    # SegNet's batch size (2), not the protocol's default (4): two augmented steps.
    assert seen == [(2, 3, H, W), (2, 3, H, W)]
    assert set(result.metrics) == {"segmentation", "depth", "normal"}
    assert all(math.isfinite(v) for m in result.metrics.values() for v in m.values())
    assert 0.0 <= result.metrics["segmentation"]["pixel_acc"] <= 1.0
    again = train(spec, seed=0)
    assert again.metrics == result.metrics  # augmentation drawn from the job's seed


def test_unlabelled_pixels_are_ignored_by_the_loss_and_the_metrics(nyu: Any) -> None:
    benchmark, _, written = nyu
    target = benchmark.load("test", NYU_SMALL)["segmentation"][:2]
    stored = torch.from_numpy(np.stack(written["val"]["label"][:2])).long()
    labelled = stored != -1
    assert (~labelled).any()
    logits = torch.randn(2, 13, H, W, generator=torch.Generator().manual_seed(0))
    task = benchmark.task("segmentation")
    # Cross-entropy averaged over the labelled pixels only, computed by hand.
    log_p = logits.log_softmax(dim=1).permute(0, 2, 3, 1)[labelled]
    by_hand = -log_p.gather(1, stored[labelled][:, None]).mean()
    torch.testing.assert_close(task.loss(logits, target), by_hand)
    state = task.new_state()
    state.update(logits, target)
    correct = (logits.argmax(dim=1) == stored)[labelled].double().mean().item()
    assert state.compute()["pixel_acc"] == pytest.approx(correct, abs=1e-12)
