"""Forward FLOPs of one image, as recorded with every run."""

from __future__ import annotations

import torch

from runners.train import forward_flops


def test_forward_flops_of_a_convolution_and_a_linear_layer_by_hand() -> None:
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, kernel_size=3, padding=1),
        torch.nn.Flatten(),
        torch.nn.Linear(4 * 8 * 8, 10),
    )
    model.train()
    # Conv: 2 · C_out · C_in · k² · H · W = 2 · 4 · 3 · 9 · 64 = 13,824; linear: 2 · 256 · 10.
    assert forward_flops(model, torch.zeros(1, 3, 8, 8)) == 13_824 + 5_120  # type: ignore[arg-type]
    assert not model.training  # counted in eval mode
