"""Frechet distance between Gaussians fitted to two feature sets (the "FID" formula).

References: Heusel et al. 2017, "GANs Trained by a Two Time-Scale Update Rule
Converge to a Local Nash Equilibrium", Eq. (6); Dowson & Landau 1982 for the
Frechet (2-Wasserstein) distance between Gaussians.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import scipy.linalg
import torch
from torch import Tensor

from genflow.errors import ConfigError, DTypeError, NonFiniteError, ShapeError

__all__ = ["gaussian_statistics", "frechet_distance", "frechet_distance_from_statistics"]

# Largest |imag| tolerated on the diagonal of sqrtm(C1 C2) before the result is
# declared unreliable (same tolerance as the reference FID implementations).
_IMAG_TOL = 1e-3


def _as_features(feats: Any, name: str) -> np.ndarray:
    """``feats`` as a float64 ``(n, d)`` array with ``n >= 2`` finite rows."""
    if isinstance(feats, Tensor):
        if feats.is_complex() or feats.dtype == torch.bool:
            raise DTypeError(f"{name} must hold real numbers; got dtype {feats.dtype}")
        array = feats.detach().to(device="cpu", dtype=torch.float64).numpy()
    else:
        array = np.asarray(feats)
        if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
            raise DTypeError(f"{name} must hold real numbers; got dtype {array.dtype}")
        array = array.astype(np.float64)
    if array.ndim != 2:
        raise ShapeError(f"{name} must have shape (n, d) (one feature vector a row); got shape {array.shape}")
    if array.shape[0] < 2:
        raise ShapeError(f"{name} needs at least 2 samples to estimate a covariance; got {array.shape[0]}")
    if not np.isfinite(array).all():
        raise NonFiniteError(f"{name} contains NaN or Inf ({int((~np.isfinite(array)).sum())} entries)")
    return array


def gaussian_statistics(feats: Tensor | np.ndarray) -> tuple[Tensor, Tensor]:
    """Mean and unbiased covariance of a feature set.

    Args:
        feats: ``(n, d)`` real features, ``n >= 2``.

    Returns:
        ``(mean, cov)``: float64 CPU tensors of shapes ``(d,)`` and ``(d, d)``;
        ``cov = (X - mean)^T (X - mean) / (n - 1)``.

    Raises:
        ShapeError: not 2-D, or fewer than 2 samples.
        DTypeError: not real-valued.
        NonFiniteError: NaN or Inf in ``feats``.
    """
    array = _as_features(feats, "feats")
    mean = array.mean(axis=0)
    cov = np.atleast_2d(np.cov(array, rowvar=False))
    return torch.from_numpy(mean), torch.from_numpy(cov)


def _sqrtm(a: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():  # singular input: scipy warns, we check finiteness ourselves
        warnings.simplefilter("ignore", RuntimeWarning)
        result = scipy.linalg.sqrtm(a)
    return result[0] if isinstance(result, tuple) else result


def frechet_distance_from_statistics(
    mean_a: Tensor | np.ndarray,
    cov_a: Tensor | np.ndarray,
    mean_b: Tensor | np.ndarray,
    cov_b: Tensor | np.ndarray,
    *,
    eps: float = 1e-6,
) -> float:
    """Frechet distance between ``N(mean_a, cov_a)`` and ``N(mean_b, cov_b)``.

    ``FD = |m_a - m_b|^2 + Tr(C_a + C_b - 2 (C_a C_b)^(1/2))``; the trace of
    ``(C_a C_b)^(1/2)`` equals that of ``(C_a^(1/2) C_b C_a^(1/2))^(1/2)``.

    Numerics (as in the reference FID code): ``(C_a C_b)^(1/2)`` is computed in
    float64 with :func:`scipy.linalg.sqrtm`. If it is not finite (singular
    products, e.g. fewer samples than dimensions or dead features), it is
    recomputed as ``((C_a + eps I)(C_b + eps I))^(1/2)``. ``sqrtm`` of a real
    matrix with (near-)zero eigenvalues can return a complex result with tiny
    imaginary parts; these are dropped when every diagonal entry has
    ``|imag| <= 1e-3``. Round-off can make the result a tiny negative number,
    which is returned as ``0.0``.

    Args:
        mean_a, mean_b: ``(d,)`` means.
        cov_a, cov_b: ``(d, d)`` covariances.
        eps: Diagonal offset used only when the plain square root is not finite.

    Returns:
        The distance as a Python float (squared units of the features).

    Raises:
        ConfigError: ``eps`` is not a positive finite number.
        ShapeError: shapes that do not match ``(d,)`` and ``(d, d)`` for one ``d``.
        NonFiniteError: non-finite statistics, or a square root that stays non-finite
            or keeps a large imaginary part after the ``eps`` offset.

    References: Heusel et al. 2017, Eq. (6); Dowson & Landau 1982.
    """
    if not (isinstance(eps, (int, float)) and 0.0 < eps < float("inf")):
        raise ConfigError(f"eps must be a positive finite number; got {eps!r}")
    m_a, m_b = (np.asarray(torch.as_tensor(m).detach().cpu(), dtype=np.float64) for m in (mean_a, mean_b))
    c_a, c_b = (np.asarray(torch.as_tensor(c).detach().cpu(), dtype=np.float64) for c in (cov_a, cov_b))
    d = m_a.shape[0] if m_a.ndim == 1 else -1
    if d < 1 or m_b.shape != (d,) or c_a.shape != (d, d) or c_b.shape != (d, d):
        raise ShapeError(
            "expected mean_a, mean_b of shape (d,) and cov_a, cov_b of shape (d, d) for one d; got "
            f"{m_a.shape}, {m_b.shape}, {c_a.shape}, {c_b.shape}"
        )
    for name, value in (("mean_a", m_a), ("mean_b", m_b), ("cov_a", c_a), ("cov_b", c_b)):
        if not np.isfinite(value).all():
            raise NonFiniteError(f"{name} contains NaN or Inf")

    covmean = _sqrtm(c_a @ c_b)
    if not np.isfinite(covmean).all():
        offset = eps * np.eye(d)
        covmean = _sqrtm((c_a + offset) @ (c_b + offset))
        if not np.isfinite(covmean).all():
            raise NonFiniteError(f"sqrtm(cov_a @ cov_b) is not finite even with eps={eps} added to the diagonals")
    if np.iscomplexobj(covmean):
        worst = float(np.abs(np.diagonal(covmean).imag).max())
        if worst > _IMAG_TOL:
            raise NonFiniteError(
                f"sqrtm(cov_a @ cov_b) has imaginary diagonal entries up to {worst:.3g} (tolerance {_IMAG_TOL}); "
                "the covariances are too ill-conditioned for a reliable Frechet distance"
            )
        covmean = covmean.real
    diff = m_a - m_b
    value = float(diff @ diff + np.trace(c_a) + np.trace(c_b) - 2.0 * np.trace(covmean))
    return max(value, 0.0)


def frechet_distance(feats_a: Tensor | np.ndarray, feats_b: Tensor | np.ndarray, *, eps: float = 1e-6) -> float:
    """Frechet distance between Gaussians fitted to two feature sets.

    Fits ``N(m, C)`` to each set with :func:`gaussian_statistics` and returns
    :func:`frechet_distance_from_statistics`. The sets may have different sizes.

    The plug-in estimate is biased upwards, by roughly ``Tr(C)`` terms of order
    ``d / n``: two samples from the same distribution give ``FD > 0``, more so
    for fewer samples. Compare values only at equal sample counts.

    Args:
        feats_a: ``(n_a, d)`` features, ``n_a >= 2``.
        feats_b: ``(n_b, d)`` features, ``n_b >= 2``.
        eps: See :func:`frechet_distance_from_statistics`.

    Returns:
        The distance as a Python float (computed in float64).

    Raises:
        ShapeError: not 2-D, fewer than 2 samples, or different feature dimensions.
        DTypeError: not real-valued.
        NonFiniteError: NaN/Inf in the features or an unreliable matrix square root.

    References: Heusel et al. 2017, Eq. (6).
    """
    a = _as_features(feats_a, "feats_a")
    b = _as_features(feats_b, "feats_b")
    if a.shape[1] != b.shape[1]:
        raise ShapeError(
            f"feats_a and feats_b must have the same feature dimension d; got shapes {a.shape} and {b.shape}"
        )
    return frechet_distance_from_statistics(*gaussian_statistics(a), *gaussian_statistics(b), eps=eps)
