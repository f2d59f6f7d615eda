"""Distances between two sets of samples.

Reference: Bonneel et al. 2015, "Sliced and Radon Wasserstein Barycenters of Measures".
"""

from __future__ import annotations

import torch
from torch import Tensor

from genflow.errors import ShapeError
from genflow.random import require_generator

__all__ = ["sliced_wasserstein"]


def sliced_wasserstein(
    x: Tensor, y: Tensor, *, generator: torch.Generator, projections: int = 256, p: int = 2
) -> Tensor:
    """Sliced ``p``-Wasserstein distance between equal-size samples ``x`` and ``y``.

    ``SW_p = (E_theta W_p^p(theta.x, theta.y))^(1/p)`` over directions uniform on
    the sphere; each 1-D distance is exact by sorting. For ``N(m1, I)`` against
    ``N(m2, I)`` in ``d`` dimensions, ``SW_2^2 = |m1 - m2|^2 / d``.

    Args:
        x, y: ``(n, *event_shape)`` each (flattened to ``(n, d)``).
        projections: Number of random directions.
        p: Order of the distance.
        generator: Randomness for the directions (required: no hidden global RNG).

    Raises:
        ShapeError: different sizes or event dimensions.
        GeneratorRequiredError: no generator.
    """
    generator = require_generator(generator, "sliced_wasserstein")
    x, y = x.reshape(x.shape[0], -1), y.reshape(y.shape[0], -1)
    if x.shape != y.shape:
        raise ShapeError(
            f"x and y must have the same (n, d) after flattening; got {tuple(x.shape)} and {tuple(y.shape)}"
        )
    dirs = torch.randn(x.shape[1], projections, generator=generator, dtype=torch.float64)
    dirs = (dirs / dirs.norm(dim=0, keepdim=True)).to(device=x.device)
    px = torch.sort(x.to(torch.float64) @ dirs, dim=0).values
    py = torch.sort(y.to(torch.float64) @ dirs, dim=0).values
    return ((px - py).abs() ** p).mean() ** (1.0 / p)
