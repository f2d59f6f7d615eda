"""Deterministic shifted copies of the digits, for calibration under distribution shift.

Each corruption is applied to the clean split at the requested size, in ``[0, 1]``
pixel units, then clipped to ``[0, 1]`` and mapped to the value range. Labels are
the clean labels. The parameters per severity (``CORRUPTION_PARAMETERS``):

============== ======================================= ===== ===== =====
kind           parameter                               1     2     3
============== ======================================= ===== ===== =====
gaussian_noise noise standard deviation (pixels 0..1)  0.1   0.2   0.4
blur           Gaussian sigma, in 8x8 pixels [1]_      0.4   0.7   1.0
rotation       angle in degrees, sign random per image 15    30    45
contrast       factor c in ``m + c (x - m)`` [2]_      0.5   0.3   0.15
============== ======================================= ===== ===== =====

.. [1] scaled by ``size / 8`` so the blur covers the same part of the digit at every
   size; separable kernel of radius ``ceil(3 sigma)``, zero padding (the digits'
   background is 0).
.. [2] ``m`` is each image's mean pixel value.

Rotation is about the image centre with bilinear sampling and zero fill. The
random parts (the noise, the rotation signs) come from a ``torch.Generator``
seeded from ``blake2b("genflow.digits_corrupted|{kind}|{severity}")``, so every
call returns identical data on every platform.

References:
    Hendrycks and Dietterich 2019, "Benchmarking Neural Network Robustness to
    Common Corruptions and Perturbations" (the corruption families).
    Ovadia et al. 2019, "Can You Trust Your Model's Uncertainty? Evaluating
    Predictive Uncertainty Under Dataset Shift" (calibration under shift).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from genflow.data.base import ImageTensorDataset, check_choice, check_value_range, to_value_range
from genflow.data.digits import load_digits_split

__all__ = ["CORRUPTIONS", "CORRUPTION_PARAMETERS", "SEVERITIES", "digits_corrupted"]

CORRUPTIONS: tuple[str, ...] = ("gaussian_noise", "blur", "rotation", "contrast")
SEVERITIES: tuple[int, ...] = (1, 2, 3)
CORRUPTION_PARAMETERS: dict[str, dict[int, float]] = {
    "gaussian_noise": {1: 0.1, 2: 0.2, 3: 0.4},
    "blur": {1: 0.4, 2: 0.7, 3: 1.0},
    "rotation": {1: 15.0, 2: 30.0, 3: 45.0},
    "contrast": {1: 0.5, 2: 0.3, 3: 0.15},
}


def _generator(kind: str, severity: int) -> torch.Generator:
    digest = hashlib.blake2b(f"genflow.digits_corrupted|{kind}|{severity}".encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little") >> 1)


def _gaussian_noise(x: Tensor, std: float, generator: torch.Generator) -> Tensor:
    return x + std * torch.randn(x.shape, generator=generator, dtype=x.dtype)


def _blur(x: Tensor, sigma8: float, generator: torch.Generator) -> Tensor:
    sigma = sigma8 * x.shape[-1] / 8.0  # sigma is given in 8x8 pixels
    radius = math.ceil(3.0 * sigma)
    offsets = torch.arange(-radius, radius + 1, dtype=x.dtype)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = kernel / kernel.sum()
    channels = x.shape[1]
    rows = kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1)
    cols = kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1)
    x = F.conv2d(x, rows, padding=(radius, 0), groups=channels)
    return F.conv2d(x, cols, padding=(0, radius), groups=channels)


def _rotate(x: Tensor, degrees: float, generator: torch.Generator) -> Tensor:
    signs = torch.randint(0, 2, (x.shape[0],), generator=generator).to(x.dtype) * 2.0 - 1.0
    angle = signs * math.radians(degrees)
    cos, sin, zero = torch.cos(angle), torch.sin(angle), torch.zeros_like(angle)
    theta = torch.stack([torch.stack([cos, -sin, zero], -1), torch.stack([sin, cos, zero], -1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _contrast(x: Tensor, factor: float, generator: torch.Generator) -> Tensor:
    mean = x.mean(dim=(-2, -1), keepdim=True)
    return mean + factor * (x - mean)


# Each corruption maps ([0, 1] images, its parameter, a seeded generator) to corrupted images (not yet clipped).
_APPLY: dict[str, Callable[[Tensor, float, torch.Generator], Tensor]] = {
    "gaussian_noise": _gaussian_noise,
    "blur": _blur,
    "rotation": _rotate,
    "contrast": _contrast,
}


def digits_corrupted(
    kind: str, severity: int, *, split: str = "test", size: int = 8, value_range: str = "classification"
) -> ImageTensorDataset:
    """A corrupted copy of a digits split (identical on every call).

    Args:
        kind: ``"gaussian_noise"``, ``"blur"``, ``"rotation"`` or ``"contrast"``.
        severity: 1, 2 or 3 (parameters in the module docstring and ``CORRUPTION_PARAMETERS``).
        split: Which clean split to corrupt (see :func:`~genflow.data.load_digits_split`).
        size: Side length 8, 16 or 32; the corruption is applied at this size.
        value_range: ``"classification"`` (``[0, 1]``, the default: shifted sets are
            for classifiers) or ``"generation"`` (``[-1, 1]``).

    Returns:
        :class:`~genflow.data.ImageTensorDataset` with the clean split's labels, pixels clipped to the range.

    Shapes:
        ``images``: ``(N, 1, size, size)``; ``labels``: ``(N,)``.

    Raises:
        DataOptionError: unknown ``kind``, ``severity``, ``split``, ``size`` or ``value_range``.
    """
    kind = check_choice(kind, CORRUPTIONS, "kind")
    severity = check_choice(severity, SEVERITIES, "severity")
    value_range = check_value_range(value_range)
    clean = load_digits_split(split, size=size, value_range="classification")
    x = _APPLY[kind](clean.images, CORRUPTION_PARAMETERS[kind][severity], _generator(kind, severity))
    return ImageTensorDataset(to_value_range(x.clamp(0.0, 1.0), value_range), clean.labels, value_range, clean.classes)
