"""Two-dimensional toy distributions, standardised with their exact population moments.

Each sampler draws from an explicit ``torch.Generator`` (on the generator's
device, in float64) and the result is standardised per coordinate with the
distribution's population mean and standard deviation (fixed constants, not the
sample's own), so a sample of any size comes from one fixed distribution with
mean about 0 and standard deviation about 1 per coordinate.

========================= ========================================================================
name                      raw distribution (before standardising)
========================= ========================================================================
``moons``                 two interleaved half circles, ``theta ~ U[0, pi]``, noise std 0.1
``eight_gaussians``       equal mixture of 8 Gaussians (std 0.25) centred on a circle of radius 2
``checkerboard``          uniform on the 8 dark squares of a 4x4 board over ``[-2, 2]^2``
``swiss_roll``            ``(t cos t, t sin t)``, ``t ~ U[1.5 pi, 4.5 pi]``, noise std 1
``spirals``               two opposite arms ``r (-cos r, sin r) / 3``, ``r = 3 pi sqrt(u)``, noise std 0.1
========================= ========================================================================

References:
    Grathwohl et al. 2019, "FFJORD: Free-form Continuous Dynamics for Scalable
    Reversible Generative Models" (eight Gaussians, checkerboard, two spirals);
    scikit-learn's ``make_moons`` and ``make_swiss_roll`` (Marsland 2009,
    "Machine Learning: An Algorithmic Perspective").
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable

import torch
from torch import Tensor

from genflow.data.errors import DataOptionError
from genflow.errors import UnknownComponentError
from genflow.random import require_generator

__all__ = ["TOY2D_NAMES", "toy2d"]

_F64 = torch.float64


def _rand(n: int, g: torch.Generator) -> Tensor:
    return torch.rand(n, generator=g, dtype=_F64, device=g.device)


def _randn(n: int, g: torch.Generator) -> Tensor:
    return torch.randn(n, 2, generator=g, dtype=_F64, device=g.device)


def _randint(high: int, n: int, g: torch.Generator) -> Tensor:
    return torch.randint(0, high, (n,), generator=g, device=g.device).to(_F64)


def _moons(n: int, g: torch.Generator) -> Tensor:
    inner, theta = _randint(2, n, g), math.pi * _rand(n, g)
    outer_xy = torch.stack([torch.cos(theta), torch.sin(theta)], -1)
    inner_xy = torch.stack([1.0 - torch.cos(theta), 0.5 - torch.sin(theta)], -1)
    return torch.where(inner[:, None] > 0, inner_xy, outer_xy) + 0.1 * _randn(n, g)


def _eight_gaussians(n: int, g: torch.Generator) -> Tensor:
    angle = _randint(8, n, g) * (math.pi / 4.0)
    return 2.0 * torch.stack([torch.cos(angle), torch.sin(angle)], -1) + 0.25 * _randn(n, g)


def _checkerboard(n: int, g: torch.Generator) -> Tensor:
    x1 = 4.0 * _rand(n, g) - 2.0
    x2 = _rand(n, g) - 2.0 * _randint(2, n, g) + torch.remainder(torch.floor(x1), 2.0)
    return torch.stack([x1, x2], -1)


def _swiss_roll(n: int, g: torch.Generator) -> Tensor:
    t = 1.5 * math.pi * (1.0 + 2.0 * _rand(n, g))
    return torch.stack([t * torch.cos(t), t * torch.sin(t)], -1) + _randn(n, g)


def _spirals(n: int, g: torch.Generator) -> Tensor:
    r = 3.0 * math.pi * torch.sqrt(_rand(n, g))
    sign = 2.0 * _randint(2, n, g) - 1.0
    arm = torch.stack([-torch.cos(r) * r + 0.5 * _rand(n, g), torch.sin(r) * r + 0.5 * _rand(n, g)], -1) / 3.0
    return sign[:, None] * arm + 0.1 * _randn(n, g)


# name -> (sampler, population mean, population std per coordinate). Moons, eight Gaussians and the
# checkerboard are in closed form; swiss roll and spirals by quadrature (scipy.integrate.quad) of
# E[x] and E[x^2] over t (resp. r, density 2 r / (3 pi)^2), plus the noise variance.
_TOYS: dict[str, tuple[Callable[[int, torch.Generator], Tensor], tuple[float, float], tuple[float, float]]] = {
    "moons": (_moons, (0.5, 0.25), (math.sqrt(0.76), math.sqrt(0.5725 - 1.0 / math.pi))),
    "eight_gaussians": (_eight_gaussians, (0.0, 0.0), (math.sqrt(2.0625), math.sqrt(2.0625))),
    "checkerboard": (_checkerboard, (0.0, 0.0), (math.sqrt(4.0 / 3.0), math.sqrt(4.0 / 3.0))),
    "swiss_roll": (_swiss_roll, (2.0, 2.0 / (3.0 * math.pi)), (6.698083, 7.022769)),
    "spirals": (_spirals, (0.0, 0.0), (1.610457, 1.584120)),
}
TOY2D_NAMES: tuple[str, ...] = tuple(_TOYS)


def toy2d(name: str, n: int, generator: torch.Generator) -> Tensor:
    """Draw ``n`` points from a standardised 2-D toy distribution.

    Args:
        name: One of ``TOY2D_NAMES``: ``moons``, ``eight_gaussians``, ``checkerboard``,
            ``swiss_roll``, ``spirals``.
        n: Number of points, at least 1.
        generator: The only source of randomness; the points are drawn on its device.

    Returns:
        float32 points with population mean 0 and standard deviation 1 per coordinate.

    Shapes:
        ``(n, 2)``.

    Raises:
        UnknownComponentError: unknown ``name`` (the message lists the known ones).
        DataOptionError: ``n`` is not an integer >= 1.
        GeneratorRequiredError: ``generator`` is not a ``torch.Generator``.
    """
    if name not in _TOYS:
        raise UnknownComponentError(f"unknown toy2d dataset {name!r}; expected one of: {', '.join(TOY2D_NAMES)}")
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise DataOptionError(f"n must be an integer >= 1; got {n!r}")
    n = int(n)
    generator = require_generator(generator, f"toy2d({name!r})")
    sampler, mean, std = _TOYS[name]
    x = sampler(n, generator)
    x = (x - torch.tensor(mean, dtype=_F64, device=x.device)) / torch.tensor(std, dtype=_F64, device=x.device)
    return x.to(torch.float32)
