"""Bilinear resizing whose gradient is the same on every run, on the CPU and on CUDA."""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F


def bilinear(x: torch.Tensor, size: tuple[int, int], *, matmul: bool | None = None) -> torch.Tensor:
    """`F.interpolate(x, size, mode="bilinear", align_corners=False)`, deterministic on CUDA.

    On CUDA, F.interpolate's backward adds each output pixel's gradient into
    the input with atomic additions, whose order (and so the float sum)
    changes from run to run: two runs of one seed would drift apart.  There
    the same linear map runs as two matrix products, R_h @ x @ R_w^T, with
    R the (out, in) interpolation matrices, and its backward is two matrix
    products too: deterministic.  Equal to F.interpolate up to rounding
    (tests/runners/test_models.py); the CPU keeps F.interpolate, and its
    results bit for bit.  `matmul`: force either way (None: on CUDA only).
    """
    if not (x.is_cuda if matmul is None else matmul):
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    height, width = x.shape[-2:]
    rows = interpolation_matrix(height, size[0], x.device, x.dtype)
    columns = interpolation_matrix(width, size[1], x.device, x.dtype)
    out = rows @ x @ columns.T
    if x.is_contiguous(memory_format=torch.channels_last):
        out = out.contiguous(memory_format=torch.channels_last)
    return out


@functools.cache
def interpolation_matrix(
    source: int, target: int, device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    """(target, source) R with R @ v = F.interpolate(v, target, mode="linear") for a vector v.

    Column i is the interpolation of the i-th unit vector, so R is exactly
    the map F.interpolate applies (same source coordinates, same clamping at
    the borders).  Cached: a CUDA graph of the training step reads it.
    """
    identity = torch.eye(source, dtype=torch.float64).unsqueeze(0)  # (1, C=source, L=source)
    columns = F.interpolate(identity, size=target, mode="linear", align_corners=False)[0]
    return columns.T.contiguous().to(device, dtype)
