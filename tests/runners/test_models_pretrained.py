"""ImageNet weights: read from the local weights folder when the protocol asks, never downloaded."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from runners.benchmarks import BENCHMARKS
from runners.models import BackboneChoice
from runners.models.pretrained import WEIGHTS_DIR_ENV, MissingWeightsError
from runners.models.resnet import DilatedResNet
from runners.train import build

NARROW = {"width_multiplier": 0.125}


def fake_torchvision_weights(directory: Path, width: float = 0.125) -> dict[str, torch.Tensor]:
    """A ResNet-18 state dict under torchvision's names (fc included), saved as resnet18.pth."""
    torch.manual_seed(123)
    source = BackboneChoice("resnet18-dilated", {"width_multiplier": width}).build()
    state = {DilatedResNet.torchvision_key(k): v for k, v in source.state_dict().items()}
    state["fc.weight"] = torch.zeros(1000, source.out_channels)
    state["fc.bias"] = torch.zeros(1000)
    torch.save(state, directory / "resnet18.pth")
    return source.state_dict()


def test_torchvision_names_map_onto_the_stages() -> None:
    encoder = BackboneChoice("resnet18-dilated", NARROW).build()
    names = {DilatedResNet.torchvision_key(k) for k in encoder.state_dict()}
    assert {"conv1.weight", "bn1.running_mean", "layer1.0.conv1.weight"} <= names
    assert {"layer4.1.bn2.weight", "layer3.0.downsample.0.weight"} <= names
    assert all(
        DilatedResNet.our_key(DilatedResNet.torchvision_key(k)) == k for k in encoder.state_dict()
    )


def test_pretrained_backbone_loads_the_local_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = fake_torchvision_weights(tmp_path)
    monkeypatch.setenv(WEIGHTS_DIR_ENV, str(tmp_path))
    torch.manual_seed(0)
    loaded = BackboneChoice("resnet18-dilated", NARROW, pretrained=True).build().state_dict()
    assert set(loaded) == set(expected)
    for key, value in expected.items():
        torch.testing.assert_close(loaded[key], value, rtol=0, atol=0)
    # Without the protocol's request, the same choice starts from a random initialisation.
    fresh = BackboneChoice("resnet18-dilated", NARROW).build().state_dict()
    assert not torch.equal(fresh["stages.0.conv1.weight"], expected["stages.0.conv1.weight"])


def test_missing_weights_name_the_expected_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(WEIGHTS_DIR_ENV, str(tmp_path))
    with pytest.raises(MissingWeightsError) as error:
        BackboneChoice("resnet50-dilated", pretrained=True).build()
    assert str(tmp_path / "resnet50.pth") in str(error.value)
    assert WEIGHTS_DIR_ENV in str(error.value)


def test_weights_of_another_width_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_torchvision_weights(tmp_path, width=0.125)
    monkeypatch.setenv(WEIGHTS_DIR_ENV, str(tmp_path))
    with pytest.raises(ValueError, match=r"ImageNet weights fit only width_multiplier 1\.0"):
        BackboneChoice("resnet18-dilated", {"width_multiplier": 0.25}, pretrained=True).build()


def test_a_backbone_without_imagenet_weights_says_so() -> None:
    with pytest.raises(ValueError, match="'small-cnn' has no ImageNet weights"):
        BackboneChoice("small-cnn", pretrained=True).build()


def test_the_protocol_decides_and_the_worker_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mini = BENCHMARKS.get("synthetic-scenes-mini")
    protocol = dataclasses.replace(
        mini.protocol(1), backbones=("resnet18-dilated",), pretrained_backbones=True
    )
    spec = {
        "benchmark": mini.name,
        "protocol_version": 1,
        "architecture": {
            "name": "hard-sharing",
            "backbone": {"name": "resnet18-dilated", **NARROW},
        },
        "weighting": {"name": "equal"},
        "optimizer": {"name": "adam", "lr": 1e-3, "weight_decay": 0.0},
    }
    monkeypatch.setenv(WEIGHTS_DIR_ENV, str(tmp_path))
    with pytest.raises(MissingWeightsError, match=r"resnet18\.pth"):
        build(spec, mini, protocol)
    expected = fake_torchvision_weights(tmp_path)
    model = build(spec, mini, protocol)[0]
    encoder = model.encoder
    torch.testing.assert_close(encoder.state_dict(), expected, rtol=0, atol=0)
