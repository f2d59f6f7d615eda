"""Maximum mean discrepancy with a Gaussian kernel (unbiased estimator).

Reference: Gretton et al. 2012, "A Kernel Two-Sample Test", JMLR 13, Lemma 6 (Eq. 3)
for the unbiased estimator and Section 8 for the median heuristic.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from genflow.errors import ConfigError, ShapeError
from genflow.validation import check_state

__all__ = ["gaussian_mmd2", "median_bandwidth"]


def _flatten_pair(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    check_state(x, "x")
    check_state(y, "y")
    x64 = x.reshape(x.shape[0], -1).to(torch.float64)
    y64 = y.reshape(y.shape[0], -1).to(device=x.device, dtype=torch.float64)
    if x64.shape[1] != y64.shape[1]:
        raise ShapeError(
            f"x and y must have the same event size after flattening to (n, d); "
            f"got {tuple(x64.shape)} and {tuple(y64.shape)}"
        )
    if x64.shape[0] < 2 or y64.shape[0] < 2:
        raise ShapeError(
            f"the unbiased MMD needs at least 2 samples in each set; got {x64.shape[0]} and {y64.shape[0]}"
        )
    return x64, y64


def median_bandwidth(x: Tensor, y: Tensor) -> Tensor:
    """Median heuristic: the median Euclidean distance between distinct points of ``x`` and ``y`` pooled.

    Uses the lower median of all ``(m + n)(m + n - 1) / 2`` pairwise distances
    (``O((m + n)^2)`` memory). Computed in float64.

    Args:
        x: ``(m, *event_shape)`` samples.
        y: ``(n, *event_shape)`` samples.

    Returns:
        0-d float64 tensor on ``x``'s device.

    Raises:
        ShapeError: different event sizes, or fewer than 2 samples in a set.
        ConfigError: the median distance is 0 (more than half the pairs coincide).

    References: Gretton et al. 2012, Section 8.
    """
    x64, y64 = _flatten_pair(x, y)
    sigma = torch.median(torch.pdist(torch.cat([x64, y64])))
    if not float(sigma) > 0.0:
        raise ConfigError("median heuristic gave bandwidth 0 (most points coincide); pass bandwidth= explicitly")
    return sigma


def gaussian_mmd2(x: Tensor, y: Tensor, *, bandwidth: float | Tensor | None = None) -> Tensor:
    """Unbiased estimate of the squared MMD between the laws of ``x`` and ``y``.

    With ``k(a, b) = exp(-|a - b|^2 / (2 sigma^2))``::

        MMD_u^2 = 1/(m(m-1)) sum_{i != j} k(x_i, x_j) + 1/(n(n-1)) sum_{i != j} k(y_i, y_j)
                  - 2/(m n) sum_{i, j} k(x_i, y_j)

    The estimator's expectation is exactly ``MMD^2`` (zero iff the laws agree, for
    this characteristic kernel), so single estimates can be slightly negative.
    Samples of any event shape are flattened to ``(n, d)``; computed in float64
    on ``x``'s device with full kernel matrices (``O((m + n)^2)`` memory).

    Args:
        x: ``(m, *event_shape)`` samples, ``m >= 2``.
        y: ``(n, *event_shape)`` samples, ``n >= 2`` (``n`` may differ from ``m``).
        bandwidth: Kernel width ``sigma > 0``; ``None`` uses :func:`median_bandwidth`
            (which then depends on the samples, so the estimate is no longer exactly unbiased).

    Returns:
        0-d float64 tensor.

    Raises:
        DTypeError: not floating-point tensors.
        ShapeError: different event sizes, or fewer than 2 samples in a set.
        ConfigError: a bandwidth that is not a positive finite number.

    References: Gretton et al. 2012, Lemma 6, Eq. (3).
    """
    x64, y64 = _flatten_pair(x, y)
    if bandwidth is None:
        sigma = median_bandwidth(x64, y64)
    else:
        sigma = torch.as_tensor(bandwidth, dtype=torch.float64, device=x64.device)
        if sigma.ndim != 0 or not (0.0 < float(sigma) < math.inf):
            raise ConfigError(f"bandwidth must be a positive finite number; got {bandwidth!r}")
    gamma = 1.0 / (2.0 * sigma**2)
    m, n = x64.shape[0], y64.shape[0]

    def off_diagonal_mean(a: Tensor) -> Tensor:
        k = torch.exp(-gamma * torch.cdist(a, a).square())
        return (k.sum() - k.diagonal().sum()) / (a.shape[0] * (a.shape[0] - 1))

    k_xy = torch.exp(-gamma * torch.cdist(x64, y64).square()).sum() / (m * n)
    return off_diagonal_mean(x64) + off_diagonal_mean(y64) - 2.0 * k_xy
