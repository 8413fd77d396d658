"""Published protocol versions never change: their definitions and results are pinned.

Changing a field of a shipped protocol version silently changes the meaning of
every result stored under it; a change of protocol is a new version.  The
fingerprint covers every field of every published version, except the fields
that say how a version is operated without changing what a finished job records
(`NOT_RESULTS`).

History of deliberate re-pins (nothing a shipped version trains changed):
- `max_flops` added (an admission limit, set on every shipped version high
  enough that each bundled example and every architecture at its defaults
  passes); the fingerprint then widened from the non-default fields to every
  field.  Before the re-pin, the old fingerprint of every version less
  `max_flops` was checked to equal its old pin.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json

import pytest
import torch

from runners.benchmarks import BENCHMARKS
from runners.benchmarks.base import Protocol
from runners.train import train

PINNED = {
    ("cityscapes", 1): "d0aa343fc1e36f06",
    ("nyuv2", 1): "fd6a1995761f0a20",
    ("synthetic-scenes", 1): "9406673e95ce6a2f",
    ("synthetic-scenes", 2): "56c18dba3b90f0da",
    ("synthetic-scenes-mini", 1): "baaa4f4fcdb45a7c",
    ("synthetic-scenes-mini", 2): "ba0fce43d36c38f7",
    ("synthetic-shapes", 1): "e94eefb819bbd4e0",
    ("synthetic-shapes-mini", 1): "e32eb65c2be0394c",
    ("celeba", 1): "cf1d68e5e8159769",
    ("synthetic-attributes", 1): "f733ef5e37ee7ad6",
    ("synthetic-attributes-16", 1): "18b7f085206e6417",
    ("synthetic-attributes-4", 1): "593241141631b388",
    ("synthetic-attributes-mini", 1): "9d31b6e0f4702975",
    ("synthetic-domains", 1): "6ac902889a763b4f",
    ("synthetic-domains-mini", 1): "22581b107150d930",
    ("office-31", 1): "423a9f47689f1329",
    ("office-home", 1): "d81c3db95497ba48",
}


# A job past its time limit is failed, not recorded differently; the front's grid says which
# front submissions `mtlb front` queues.  Neither changes what any finished job records.
NOT_RESULTS = {"time_limit_s", "front_divisions"}


def fingerprint(protocol: Protocol) -> str:
    """sha256 of every field, by name, as canonical JSON.

    Every field, defaults included: a changed default changes the protocols that
    rely on it, and a new field changes every fingerprint, so that adding one is
    a deliberate act (state in the commit that the shipped versions train as before).
    """
    fields = {}
    for f in dataclasses.fields(protocol):
        if f.name in NOT_RESULTS:
            continue
        value = getattr(protocol, f.name)
        fields[f.name] = dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value
    text = json.dumps(fields, sort_keys=True, default=lambda v: dict(v))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def published() -> list[tuple[str, int]]:
    return [(name, v) for name in BENCHMARKS.names() for v in BENCHMARKS.get(name).protocols]


def test_every_published_protocol_is_pinned() -> None:
    assert sorted(published()) == sorted(PINNED), "a new version needs its fingerprint here"


@pytest.mark.parametrize(("benchmark", "version"), sorted(PINNED))
def test_a_published_protocol_is_unchanged(benchmark: str, version: int) -> None:
    protocol = BENCHMARKS.get(benchmark).protocol(version)
    assert fingerprint(protocol) == PINNED[(benchmark, version)], (
        f"{benchmark} v{version} changed: publish the change as a new version instead"
    )


def test_synthetic_scenes_v1_trains_as_it_did_before_v2() -> None:
    # Metrics of hard sharing + equal weighting on the mini v1 protocol, seed 0, one
    # thread, recorded before v2's output scaling and paired initialisation existed:
    # v1's model, initialisation and training are untouched by them.
    torch.set_num_threads(1)
    spec = {
        "benchmark": "synthetic-scenes-mini",
        "protocol_version": 1,
        "architecture": {"name": "hard-sharing", "backbone": "small-cnn"},
        "weighting": {"name": "equal"},
        "optimizer": {"name": "adam", "lr": 1e-3, "weight_decay": 0.0},
    }
    before = {
        "segmentation": {"miou": 0.061737060546875, "pixel_acc": 0.37042236328125},
        "depth": {"abs_err": 3.585212037567544, "rel_err": 0.9006728983225223},
        "normal": {
            "mean_angle": 55.88326434243165,
            "median_angle": 50.44545454545454,
            "within_11_25": 0.001708984375,
            "within_22_5": 0.029083251953125,
            "within_30": 0.0906982421875,
        },
    }
    metrics = train(spec, seed=0).metrics
    for task, values in before.items():
        # Not bit for bit: float kernels differ between CPUs (on an AMD EPYC depth's
        # abs_err read 3.58561, 1.1e-4 off, and 20 of 65,536 pixels crossed a normal's
        # 22.5-degree threshold), while a changed model or initialisation moves the
        # metrics by far more than 1e-3.
        assert metrics[task] == pytest.approx(values, rel=1e-3, abs=1e-3), task
