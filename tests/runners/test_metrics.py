"""Tests of runners.metrics against plain numpy references, golden values and merges.

Tolerances: metrics that are exact in float64 (everything but the median)
agree with the numpy reference to 1e-9 relative; the median agrees to the
histogram bin width. Merged states agree with one pass bit for bit on integer
statistics, and to 1e-12 relative on float64 sums (only the order of the
additions differs).
"""

from __future__ import annotations

import doctest
import itertools
import math
import pickle
import re
from collections.abc import Callable

import numpy as np
import pytest
import torch

import runners.metrics as metrics_module
from runners.metrics import (
    DepthState,
    Metric,
    MetricState,
    NormalState,
    SegmentationState,
)

EXACT = 1e-9
NORMAL_NAMES = ["mean_angle", "median_angle", "within_11_25", "within_22_5", "within_30"]


# ------------------------------------------------------------ numpy references
def np_segmentation(logits: np.ndarray, target: np.ndarray, c: int) -> dict[str, float]:
    """Per class, straight from the masks; no confusion matrix."""
    pred = logits.argmax(axis=1)
    valid = (target >= 0) & (target < c)
    ious = []
    for k in range(c):
        tp = np.sum((pred == k) & (target == k) & valid)
        fp = np.sum((pred == k) & (target != k) & valid)
        fn = np.sum((pred != k) & (target == k) & valid)
        if tp + fp + fn > 0:
            ious.append(tp / (tp + fp + fn))
    return {
        "miou": float(np.mean(ious)),
        "pixel_acc": float(np.sum((pred == target) & valid) / np.sum(valid)),
    }


def np_depth(pred: np.ndarray, target: np.ndarray) -> dict[str, float]:
    p = pred.reshape(target.shape).astype(np.float64)
    t = target.astype(np.float64)
    valid = (t != 0) & np.isfinite(t)
    err = np.abs(p[valid] - t[valid])
    return {"abs_err": float(err.mean()), "rel_err": float((err / t[valid]).mean())}


def np_angles(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    p = np.moveaxis(pred.astype(np.float64), 1, -1).reshape(-1, 3)
    t = np.moveaxis(target.astype(np.float64), 1, -1).reshape(-1, 3)
    valid = np.any(t != 0, axis=1)
    p, t = p[valid], t[valid]
    p = p / np.maximum(np.linalg.norm(p, axis=1, keepdims=True), 1e-12)
    return np.degrees(np.arccos(np.clip(np.sum(p * t, axis=1), -1.0, 1.0)))


def np_normal(pred: np.ndarray, target: np.ndarray) -> dict[str, float]:
    a = np_angles(pred, target)
    return {
        "mean_angle": float(a.mean()),
        "median_angle": float(np.median(a)),
        "within_11_25": float(np.mean(a < 11.25)),
        "within_22_5": float(np.mean(a < 22.5)),
        "within_30": float(np.mean(a < 30.0)),
    }


# -------------------------------------------------------------------- random data
Arrays = tuple[np.ndarray, np.ndarray]


def seg_data(rng: np.random.Generator, b: int = 6, c: int = 5, h: int = 7, w: int = 9) -> Arrays:
    logits = rng.standard_normal((b, c, h, w)).astype(np.float32)
    target = rng.integers(0, c, size=(b, h, w))
    ignore = rng.random((b, h, w))
    target[ignore < 0.1] = 255
    target[(ignore >= 0.1) & (ignore < 0.15)] = -1
    return logits, target


def depth_data(rng: np.random.Generator, b: int = 6, h: int = 7, w: int = 9) -> Arrays:
    pred = rng.uniform(0.1, 10.0, size=(b, 1, h, w)).astype(np.float32)
    target = rng.uniform(0.5, 10.0, size=(b, h, w)).astype(np.float32)
    target[rng.random((b, h, w)) < 0.3] = 0.0
    return pred, target


def normal_data(rng: np.random.Generator, b: int = 6, h: int = 16, w: int = 16) -> Arrays:
    target = rng.standard_normal((b, 3, h, w))
    target /= np.linalg.norm(target, axis=1, keepdims=True)
    # Predictions near the target (so the thresholds matter), not unit length.
    pred = target + 0.6 * rng.standard_normal((b, 3, h, w))
    pred *= rng.uniform(0.2, 5.0, size=(b, 1, h, w))
    invalid = rng.random((b, h, w)) < 0.2
    target = np.where(invalid[:, None], 0.0, target)
    return pred.astype(np.float32), target.astype(np.float32)


def assert_close(got: dict[str, float], want: dict[str, float], rel: float = EXACT) -> None:
    assert list(got) == list(want)
    for k in want:
        assert got[k] == pytest.approx(want[k], rel=rel, abs=0), k


def t(x: np.ndarray | list[object]) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x))


def normal_at(angle_deg: float, length: float = 1.0) -> list[float]:
    """A vector at `angle_deg` from +z, in the x-z plane."""
    r = math.radians(angle_deg)
    return [length * math.sin(r), 0.0, length * math.cos(r)]


def normals_image(vectors: list[list[float]]) -> torch.Tensor:
    """(1, 3, 1, N) from N 3-vectors."""
    return torch.tensor(vectors, dtype=torch.float64).T.reshape(1, 3, 1, len(vectors))


# ---------------------------------------------------------------------- metadata
def test_direction_and_headline_metadata() -> None:
    def pinned(cls: type[MetricState]) -> list[tuple[str, bool]]:
        return [(m.name, m.higher_is_better) for m in cls.metrics]

    assert pinned(SegmentationState) == [("miou", True), ("pixel_acc", True)]
    assert pinned(DepthState) == [("abs_err", False), ("rel_err", False)]
    assert pinned(NormalState) == [
        ("mean_angle", False),
        ("median_angle", False),
        ("within_11_25", True),
        ("within_22_5", True),
        ("within_30", True),
    ]
    for cls in (SegmentationState, DepthState, NormalState):
        assert all(isinstance(m, Metric) and m.description for m in cls.metrics)
    with pytest.raises(AttributeError):
        SegmentationState.metrics[0].higher_is_better = False  # type: ignore[misc]


def test_docstring_examples() -> None:
    result = doctest.testmod(metrics_module, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 2
    assert result.failed == 0


# --------------------------------------------------------------- numpy agreement
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_segmentation_matches_numpy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    logits, target = seg_data(rng)
    state = SegmentationState(5)
    state.update(t(logits), t(target))
    assert_close(state.compute(), np_segmentation(logits, target, 5))


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("channel_dims", [(True, False), (False, True), (True, True)])
def test_depth_matches_numpy(seed: int, channel_dims: tuple[bool, bool]) -> None:
    rng = np.random.default_rng(seed)
    pred, target = depth_data(rng)
    p = pred if channel_dims[0] else pred[:, 0]
    tg = target[:, None] if channel_dims[1] else target
    state = DepthState()
    state.update(t(p), t(tg))
    assert_close(state.compute(), np_depth(pred, target))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_normal_matches_numpy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    pred, target = normal_data(rng)
    state = NormalState()
    state.update(t(pred), t(target))
    got, want = state.compute(), np_normal(pred, target)
    assert list(got) == NORMAL_NAMES
    assert abs(got["median_angle"] - want["median_angle"]) <= state.bin_width
    del got["median_angle"], want["median_angle"]
    assert_close(got, want)
    # The fractions are not all trivially 0 or 1 on this data.
    assert 0.05 < want["within_11_25"] < want["within_30"] < 0.95


@pytest.mark.parametrize("bins_per_degree", [1, 10, 100])
@pytest.mark.parametrize("n", [1, 2, 7, 50, 51])
def test_median_within_bin_width(bins_per_degree: int, n: int) -> None:
    rng = np.random.default_rng(n)
    angles = rng.uniform(0.0, 180.0, size=n)
    target = normals_image([[0.0, 0.0, 1.0]] * n)
    pred = normals_image([normal_at(a, length=3.0) for a in angles])
    state = NormalState(bins_per_degree)
    state.update(pred, target)
    assert abs(state.compute()["median_angle"] - np.median(angles)) <= 1.0 / bins_per_degree


def test_median_of_even_count_with_a_gap() -> None:
    # The two middle angles are 10 and 100: the median is their mean, 55,
    # not a value read off the edge of 10's bin.
    target = normals_image([[0.0, 0.0, 1.0]] * 4)
    pred = normals_image([normal_at(a) for a in (1.0, 10.0, 100.0, 170.0)])
    state = NormalState()
    state.update(pred, target)
    assert abs(state.compute()["median_angle"] - 55.0) <= 0.01


# --------------------------------------------------------------------- merging
def random_parts(rng: np.random.Generator, n: int, parts: int) -> list[slice]:
    cuts = sorted(rng.choice(np.arange(1, n), size=parts - 1, replace=False).tolist())
    bounds = [0, *cuts, n]
    return [slice(a, b) for a, b in itertools.pairwise(bounds)]


def merged_in_random_tree(rng: np.random.Generator, states: list[MetricState]) -> MetricState:
    states = list(states)
    while len(states) > 1:
        i, j = sorted(rng.choice(len(states), size=2, replace=False).tolist())
        states[i].merge(states.pop(j))
    return states[0]


CASES: dict[str, tuple[Callable[[], MetricState], Callable[..., Arrays]]] = {
    "segmentation": (lambda: SegmentationState(5), seg_data),
    "depth": (DepthState, depth_data),
    "normal": (NormalState, normal_data),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_merge_of_parts_equals_one_pass(case: str, seed: int) -> None:
    make, data = CASES[case]
    rng = np.random.default_rng(seed)
    pred, target = data(rng, b=12)
    whole = make()
    whole.update(t(pred), t(target))

    parts = []
    for part in random_parts(rng, 12, int(rng.integers(2, 6))):
        state = make()
        # Each part in one or two batches.
        mid = part.start + (part.stop - part.start) // 2
        for sub in (slice(part.start, mid), slice(mid, part.stop)):
            if sub.stop > sub.start:
                state.update(t(pred[sub]), t(target[sub]))
        parts.append(state)
    merged = merged_in_random_tree(rng, parts)

    want, got = whole.statistics(), merged.statistics()
    assert list(got) == list(want)
    for key in want:
        if want[key].dtype.is_floating_point:
            torch.testing.assert_close(got[key], want[key], rtol=1e-12, atol=0)
        else:
            assert torch.equal(got[key], want[key]), key
    assert_close(merged.compute(), whole.compute(), rel=1e-12)


@pytest.mark.parametrize("case", list(CASES))
def test_merge_with_empty_state_is_a_no_op(case: str) -> None:
    make, data = CASES[case]
    pred, target = data(np.random.default_rng(5))
    full = make()
    full.update(t(pred), t(target))
    before = full.statistics()

    full.merge(make())
    for key, value in full.statistics().items():
        assert torch.equal(value, before[key]), key

    empty = make()
    empty.merge(full)
    for key, value in empty.statistics().items():
        assert torch.equal(value, before[key]), key
    assert empty.compute() == full.compute()


def test_merge_rejects_other_type_and_config() -> None:
    with pytest.raises(TypeError, match="SegmentationState"):
        SegmentationState(3).merge(DepthState())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="num_classes"):
        SegmentationState(3).merge(SegmentationState(4))
    with pytest.raises(ValueError, match="bins_per_degree"):
        NormalState(100).merge(NormalState(10))


def test_depth_is_pixel_weighted_across_batches() -> None:
    state = DepthState()
    # Batch 1: one valid pixel, error 3. Batch 2: three valid pixels, error 1.
    state.update(t([[[4.0, 9.0]]]), t([[[1.0, 0.0]]]))
    state.update(t([[[2.0, 3.0, 4.0]]]), t([[[1.0, 2.0, 3.0]]]))
    # (3 + 1 + 1 + 1) / 4, not the mean of the batch means (3 + 1) / 2.
    assert state.compute()["abs_err"] == pytest.approx(1.5, rel=EXACT)
    assert state.compute()["rel_err"] == pytest.approx((3 + 1 + 1 / 2 + 1 / 3) / 4, rel=EXACT)


# ----------------------------------------------------------------- golden values
def onehot_logits(pred: list[list[int]], c: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.tensor([pred]), c).permute(0, 3, 1, 2).float()


def test_segmentation_golden_2x2() -> None:
    # target [[0, 1], [1, 2]], prediction [[0, 1], [2, 2]]:
    # IoU_0 = 1/1, IoU_1 = 1/(1+0+1), IoU_2 = 1/(1+1+0); 3 of 4 pixels right.
    state = SegmentationState(3)
    state.update(onehot_logits([[0, 1], [2, 2]], 3), torch.tensor([[[0, 1], [1, 2]]]))
    got = state.compute()
    assert got["miou"] == pytest.approx(2 / 3, rel=EXACT)
    assert got["pixel_acc"] == pytest.approx(3 / 4, rel=EXACT)
    assert state.confusion.tolist() == [[1, 0, 0], [0, 1, 1], [0, 0, 1]]


def test_segmentation_golden_with_ignored_labels_and_absent_class() -> None:
    # target [[0, 255], [-1, 0]], prediction [[0, 2], [2, 1]]. Counted pixels:
    # (t0, p0) and (t0, p1). IoU_0 = 1/2, IoU_1 = 0/1 (only predicted), class 2
    # is predicted only on ignored pixels, so absent: miou = (1/2 + 0) / 2.
    state = SegmentationState(3)
    state.update(onehot_logits([[0, 2], [2, 1]], 3), torch.tensor([[[0, 255], [-1, 0]]]))
    got = state.compute()
    assert got["miou"] == pytest.approx(0.25, rel=EXACT)
    assert got["pixel_acc"] == pytest.approx(0.5, rel=EXACT)


def test_depth_golden_2x2() -> None:
    # Valid (t != 0): (p3, t2), (p2, t4), (p1, t1): |err| = 1, 2, 0; rel = 1/2, 1/2, 0.
    state = DepthState()
    state.update(t([[[[3.0, 5.0], [2.0, 1.0]]]]), t([[[2.0, 0.0], [4.0, 1.0]]]))
    got = state.compute()
    assert got["abs_err"] == pytest.approx(1.0, rel=EXACT)
    assert got["rel_err"] == pytest.approx(1 / 3, rel=EXACT)


def test_normal_golden_2x2() -> None:
    # Target +z everywhere; predictions (not unit length) at 0, 45, 90, 180 degrees.
    target = torch.tensor([0.0, 0.0, 1.0]).reshape(1, 3, 1, 1).expand(1, 3, 2, 2)
    pred = torch.tensor([[[0.0, 0.0, 5.0], [1.0, 0.0, 1.0]], [[0.0, 2.0, 0.0], [0.0, 0.0, -3.0]]])
    state = NormalState()
    state.update(pred.permute(2, 0, 1)[None], target)
    got = state.compute()
    assert got["mean_angle"] == pytest.approx((0 + 45 + 90 + 180) / 4, rel=EXACT)
    assert abs(got["median_angle"] - (45 + 90) / 2) <= state.bin_width
    assert got["within_11_25"] == got["within_22_5"] == got["within_30"] == 0.25


# -------------------------------------------------------------------- edge cases
def test_segmentation_ignores_predictions_at_ignored_labels() -> None:
    rng = np.random.default_rng(7)
    logits, target = seg_data(rng)
    ignored = (target == 255) | (target == -1)
    assert ignored.any() and (target == -1).any()
    a, b = SegmentationState(5), SegmentationState(5)
    a.update(t(logits), t(target))
    scrambled = np.where(ignored[:, None], rng.standard_normal(logits.shape), logits)
    b.update(t(scrambled.astype(np.float32)), t(target))
    assert torch.equal(a.confusion, b.confusion)
    assert int(a.confusion.sum()) == int((~ignored).sum())


def test_segmentation_class_absent_from_split() -> None:
    rng = np.random.default_rng(8)
    logits, target = seg_data(rng, c=5)
    logits[:, 4] = -1e9  # never predicted
    target[target == 4] = 0  # never in the target
    state = SegmentationState(5)
    state.update(t(logits), t(target))
    want = np_segmentation(logits, target, 5)
    assert_close(state.compute(), want)
    # Not the mean over all 5 classes with a 0 (or nan) for the absent one.
    assert state.compute()["miou"] * 4 / 5 < want["miou"]


def test_nan_when_nothing_valid() -> None:
    seg = SegmentationState(3)
    seg.update(torch.zeros(1, 3, 2, 2), torch.full((1, 2, 2), 255))
    assert all(math.isnan(v) for v in seg.compute().values())

    depth = DepthState()
    depth.update(torch.ones(2, 1, 3, 3), torch.zeros(2, 3, 3))
    assert list(depth.compute()) == ["abs_err", "rel_err"]
    assert all(math.isnan(v) for v in depth.compute().values())

    normal = NormalState()
    normal.update(torch.ones(2, 3, 3, 3), torch.zeros(2, 3, 3, 3))
    assert list(normal.compute()) == NORMAL_NAMES
    assert all(math.isnan(v) for v in normal.compute().values())

    for fresh in (SegmentationState(3), DepthState(), NormalState()):
        assert all(math.isnan(v) for v in fresh.compute().values())


def test_nonfinite_target_depth_is_invalid() -> None:
    state = DepthState()
    state.update(t([[[1.0, 2.0, 3.0]]]), t([[[2.0, float("nan"), float("inf")]]]))
    assert state.compute() == {"abs_err": 1.0, "rel_err": 0.5}


def test_nonfinite_prediction_gives_nonfinite_metrics() -> None:
    seg = SegmentationState(2)
    logits = torch.zeros(1, 2, 1, 2)
    logits[0, 0, 0, 1] = float("nan")
    seg.update(logits, torch.tensor([[[0, 1]]]))
    assert all(math.isnan(v) for v in seg.compute().values())
    # A nan logit at an ignored pixel is not counted.
    seg_ok = SegmentationState(2)
    seg_ok.update(logits, torch.tensor([[[0, 255]]]))
    assert seg_ok.compute() == {"miou": 1.0, "pixel_acc": 1.0}

    depth = DepthState()
    depth.update(t([[[float("nan"), 1.0]]]), t([[[1.0, 1.0]]]))
    assert all(math.isnan(v) for v in depth.compute().values())

    normal = NormalState()
    pred = normals_image([[float("nan"), 0.0, 1.0], [0.0, 0.0, 1.0]])
    normal.update(pred, normals_image([[0.0, 0.0, 1.0]] * 2))
    assert all(math.isnan(v) for v in normal.compute().values())


def test_normal_prediction_scale_does_not_matter() -> None:
    pred, target = normal_data(np.random.default_rng(9))
    a, b = NormalState(), NormalState()
    a.update(t(pred), t(target))
    scale = np.random.default_rng(10).uniform(1e-3, 1e3, size=(pred.shape[0], 1, *pred.shape[2:]))
    b.update(t(pred * scale), t(target))
    assert_close(b.compute(), a.compute(), rel=1e-6)
    # A zero prediction is 90 degrees from any target, not nan.
    zero = NormalState()
    zero.update(torch.zeros(1, 3, 1, 1), torch.tensor([0.0, 1.0, 0.0]).reshape(1, 3, 1, 1))
    assert zero.compute()["mean_angle"] == pytest.approx(90.0, rel=EXACT)


def test_threshold_fractions_bracket_each_threshold() -> None:
    pred = normals_image([normal_at(a) for a in (11.0, 11.5, 22.0, 23.0, 29.0, 31.0)])
    state = NormalState()
    state.update(pred, normals_image([[0.0, 0.0, 1.0]] * 6))
    got = state.compute()
    assert (got["within_11_25"], got["within_22_5"], got["within_30"]) == (1 / 6, 3 / 6, 5 / 6)


def test_update_under_autograd_records_nothing() -> None:
    logits = torch.randn(2, 3, 4, 4, requires_grad=True)
    state = SegmentationState(3)
    state.update(logits, torch.randint(0, 3, (2, 4, 4)))
    assert not any(v.requires_grad for v in state.statistics().values())
    depth = DepthState()
    depth.update(torch.rand(2, 1, 4, 4, requires_grad=True) + 1, torch.rand(2, 4, 4) + 1)
    normal = NormalState()
    normal.update(torch.randn(2, 3, 4, 4, requires_grad=True), torch.ones(2, 3, 4, 4) / 3**0.5)
    # The stored statistics themselves, not the detached copies `statistics()` hands out.
    for stored in (*depth._stats.values(), *normal._stats.values()):
        assert not stored.requires_grad and stored.grad_fn is None


# ------------------------------------------------------- validation and shipping
def test_constructor_arguments_are_checked() -> None:
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match=rf"num_classes.*{re.escape(repr(bad))}"):
            SegmentationState(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"bins_per_degree.*\b0\b"):
        NormalState(0)


def test_shapes_are_checked() -> None:
    with pytest.raises(ValueError, match="logits"):
        SegmentationState(3).update(torch.zeros(1, 4, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="target"):
        SegmentationState(3).update(torch.zeros(1, 3, 2, 2), torch.zeros(1, 2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="integer"):
        SegmentationState(3).update(torch.zeros(1, 3, 2, 2), torch.zeros(1, 2, 2))
    with pytest.raises(ValueError, match="same"):
        DepthState().update(torch.zeros(1, 1, 2, 2), torch.zeros(1, 2, 3))
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        DepthState().update(torch.zeros(1, 2, 2, 2), torch.zeros(1, 2, 2))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        NormalState().update(torch.zeros(1, 2, 2, 2), torch.zeros(1, 2, 2, 2))


@pytest.mark.parametrize("case", list(CASES))
def test_to_dict_and_pickle_round_trip(case: str) -> None:
    make, data = CASES[case]
    pred, target = data(np.random.default_rng(11))
    state = make()
    state.update(t(pred), t(target))
    for copy in (type(state).from_dict(state.to_dict()), pickle.loads(pickle.dumps(state))):
        assert type(copy) is type(state)
        assert copy.config() == state.config()
        assert copy.compute() == state.compute()
        for key, value in copy.statistics().items():
            assert torch.equal(value, state.statistics()[key]), key
        # The copy keeps accumulating.
        copy.update(t(pred), t(target))
        state_twice = make()
        state_twice.update(t(pred), t(target))
        state_twice.update(t(pred), t(target))
        assert_close(copy.compute(), state_twice.compute(), rel=1e-12)


def test_from_dict_rejects_bad_statistics() -> None:
    data = SegmentationState(3).to_dict()
    data["statistics"]["confusion"] = torch.zeros(4, 4, dtype=torch.int64)
    with pytest.raises(ValueError, match="confusion"):
        SegmentationState.from_dict(data)


def test_repr_shows_config() -> None:
    assert repr(SegmentationState(13)) == "SegmentationState(num_classes=13)"
    assert repr(NormalState()) == "NormalState(bins_per_degree=100)"
    assert repr(DepthState()) == "DepthState()"


def test_compute_returns_python_floats() -> None:
    state = DepthState()
    state.update(torch.ones(1, 2, 2) * 2, torch.ones(1, 2, 2))
    assert all(type(v) is float for v in state.compute().values())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_state_follows_the_device_of_the_first_update() -> None:
    rng = np.random.default_rng(12)
    for case, (make, data) in CASES.items():
        pred, target = data(rng)
        on_gpu, on_cpu = make(), make()
        assert on_gpu.device == torch.device("cpu")
        on_gpu.update(t(pred).cuda(), t(target).cuda())
        assert on_gpu.device.type == "cuda", case
        assert all(v.device.type == "cuda" for v in on_gpu._stats.values())
        on_cpu.update(t(pred), t(target))
        assert_close(on_gpu.compute(), on_cpu.compute(), rel=1e-9)
        # A GPU state merges into a CPU state and back; shipping gives CPU tensors.
        on_cpu.merge(on_gpu)
        on_gpu.merge(on_cpu)
        assert all(v.device.type == "cpu" for v in on_gpu.to_dict()["statistics"].values())
        assert type(pickle.loads(pickle.dumps(on_gpu))).__name__ == type(on_gpu).__name__


# ------------------------------------------------- the whole split, not batch means
# Audit of the protocol (issue 4): every metric is a statistic of all valid
# pixels of the split, whatever the batches; parts with no valid pixel at all
# (only ignored labels, zero depth, zero normals) change nothing.
INVALIDATE: dict[str, Callable[[Arrays], Arrays]] = {
    "segmentation": lambda d: (d[0], np.full_like(d[1], 255)),
    "depth": lambda d: (d[0], np.zeros_like(d[1])),
    "normal": lambda d: (d[0], np.zeros_like(d[1])),
}
REFERENCE: dict[str, Callable[[np.ndarray, np.ndarray], dict[str, float]]] = {
    "segmentation": lambda p, tg: np_segmentation(p, tg, 5),
    "depth": np_depth,
    "normal": np_normal,
}


@pytest.mark.parametrize("case", list(CASES))
def test_parts_without_valid_pixels_change_nothing(case: str) -> None:
    make, data = CASES[case]
    rng = np.random.default_rng(21)
    pred, target = data(rng)
    dead_pred, dead_target = INVALIDATE[case](data(rng))
    whole = make()
    whole.update(t(pred), t(target))
    parts = [make() for _ in range(3)]
    parts[0].update(t(dead_pred), t(dead_target))  # only invalid pixels
    parts[1].update(t(pred[:2]), t(target[:2]))
    parts[1].update(t(dead_pred[:1]), t(dead_target[:1]))
    parts[2].update(t(pred[2:]), t(target[2:]))
    merged = merged_in_random_tree(rng, parts)
    assert_close(merged.compute(), whole.compute(), rel=1e-12)
    # And against the numpy reference over the valid pixels of the whole split.
    got, want = merged.compute(), REFERENCE[case](pred, target)
    if case == "normal":
        assert abs(got.pop("median_angle") - want.pop("median_angle")) <= NormalState().bin_width
    assert_close(got, want)


def test_miou_is_one_confusion_matrix_not_a_mean_over_batches() -> None:
    state = SegmentationState(2)
    # Batch 1: 1 pixel of class 0, right.  Batch 2: 3 pixels of class 1, one predicted 0.
    state.update(onehot_logits([[0]], 2), t([[[0]]]))
    state.update(onehot_logits([[1, 1, 0]], 2), t([[[1, 1, 1]]]))
    # Whole split: class 0 IoU 1 / (1 + 1) = 0.5, class 1 IoU 2 / 3 -> mIoU 7/12;
    # pixel acc 3/4.  (Batch means would give mIoU (1 + (0 + 2/3) / 2) / 2 = 2/3.)
    assert state.compute()["miou"] == pytest.approx(7 / 12, rel=EXACT)
    assert state.compute()["pixel_acc"] == pytest.approx(3 / 4, rel=EXACT)


def test_normal_median_is_over_all_pixels_of_the_split() -> None:
    state = NormalState()
    # Batch 1: angles 10, 20, 29 degrees.  Batch 2: 40 and 50 (and an invalid pixel).
    up = normal_at(0)
    state.update(normals_image([normal_at(a) for a in (10, 20, 29)]), normals_image([up] * 3))
    state.update(
        normals_image([normal_at(a) for a in (40, 50, 0)]),
        normals_image([up, up, [0.0, 0.0, 0.0]]),
    )
    got = state.compute()
    # Median of {10, 20, 29, 40, 50} is 29 (batch medians would give (20 + 45) / 2 = 32.5).
    assert abs(got["median_angle"] - 29.0) <= state.bin_width
    assert got["mean_angle"] == pytest.approx(149 / 5, rel=EXACT)
    assert got["within_30"] == pytest.approx(3 / 5, rel=EXACT)
    assert got["within_11_25"] == pytest.approx(1 / 5, rel=EXACT)
