"""Comparing predictive distributions: fidelity to an ensemble, diversity among members, and DEE.

* ``agreement(p, q) = 1/N sum_n [argmax p_n = argmax q_n]``
* ``kl(p, q) = 1/N sum_n sum_k p_nk (log p_nk - log q_nk)`` (``p`` the reference, e.g. the ensemble)
* ``disagreement(P) = 2 / (M (M - 1)) sum_{i<j} 1/N sum_n [argmax P_i,n != argmax P_j,n]`` over ``M`` members
* ``deep_ensemble_equivalent``: the (real) ensemble size whose NLL equals a method's, read off the measured
  curve of NLL against ensemble size by linear interpolation.

References:
    Ashukha et al. 2020, "Pitfalls of In-Domain Uncertainty Estimation and Ensembling in Deep Learning",
    sec. 4 (the deep ensemble equivalent);
    Fort et al. 2019, "Deep Ensembles: A Loss Landscape Perspective", sec. 4 (prediction disagreement).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from genflow.errors import ConfigError, ShapeError
from genflow.metrics.calibration import check_probabilities

__all__ = ["agreement", "kl", "disagreement", "deep_ensemble_equivalent"]


def _pair(p: object, q: object) -> tuple[Tensor, Tensor]:
    a, b = check_probabilities(p, "p"), check_probabilities(q, "q")
    if a.shape != b.shape:
        raise ShapeError(f"p and q must have the same shape (N, C); got {tuple(a.shape)} and {tuple(b.shape)}")
    return a, b.to(a.device)


def agreement(p: Tensor, q: Tensor) -> float:
    """Fraction of examples on which the two distributions predict the same class."""
    a, b = _pair(p, q)
    return float((a.argmax(1) == b.argmax(1)).double().mean())


def kl(p: Tensor, q: Tensor, *, eps: float = 1e-12) -> float:
    """Mean ``KL(p_n || q_n)`` over examples; ``q`` is clamped below at ``eps`` (terms with ``p = 0`` are 0)."""
    a, b = _pair(p, q)
    terms = torch.where(a > 0, a * (a.clamp_min(eps).log() - b.clamp_min(eps).log()), torch.zeros_like(a))
    return float(terms.sum(1).mean())


def disagreement(member_probs: Tensor | Sequence[Tensor]) -> float:
    """Mean over member pairs of the fraction of examples on which the two predict different classes.

    Args:
        member_probs: ``(M, N, C)`` probabilities of ``M >= 2`` members (or a sequence of ``(N, C)``).

    Raises:
        ShapeError: fewer than two members, or members of different shapes.
    """
    members = list(member_probs.unbind(0)) if isinstance(member_probs, Tensor) else list(member_probs)
    if len(members) < 2:
        raise ShapeError(f"disagreement needs at least 2 members (M, N, C); got {len(members)}")
    checked = [check_probabilities(m, f"member_probs[{i}]") for i, m in enumerate(members)]
    if any(m.shape != checked[0].shape for m in checked):
        raise ShapeError(f"every member must have the same shape (N, C); got {[tuple(m.shape) for m in checked]}")
    predicted = torch.stack([m.argmax(1) for m in checked])
    i, j = torch.triu_indices(len(checked), len(checked), offset=1)
    return float((predicted[i] != predicted[j]).double().mean())


def deep_ensemble_equivalent(
    method_nll: float, ensemble_nll: Sequence[float], sizes: Sequence[int] | None = None
) -> float:
    """The ensemble size whose NLL a method matches (DEE), interpolated on the measured curve.

    Walking the curve in order of size, the first segment ``[s_i, s_{i+1}]`` on which the ensemble NLL falls
    to ``method_nll`` gives ``s_i + (s_{i+1} - s_i) (nll_i - method_nll) / (nll_i - nll_{i+1})``. A method
    no better than the smallest ensemble gets ``sizes[0]``; one better than the largest gets ``sizes[-1]``
    (a lower bound): the curve is not extrapolated (as ``numpy.interp`` clamps in Ashukha et al.'s code).

    Args:
        method_nll: The method's NLL on the same data.
        ensemble_nll: NLL of ensembles of ``sizes[i]`` members.
        sizes: Increasing ensemble sizes; default ``1, 2, ..., len(ensemble_nll)``.

    Returns:
        The DEE (float).

    Raises:
        ConfigError: non-finite values, fewer than one point, mismatched lengths or sizes not increasing.
    """
    curve = [float(v) for v in ensemble_nll]
    sizes = list(range(1, len(curve) + 1)) if sizes is None else [int(s) for s in sizes]
    if not curve or len(sizes) != len(curve):
        raise ConfigError(f"need one NLL per ensemble size; got {len(curve)} NLLs and {len(sizes)} sizes")
    if any(b <= a for a, b in zip(sizes[:-1], sizes[1:], strict=True)):
        raise ConfigError(f"sizes must be strictly increasing; got {sizes}")
    if not all(map(math.isfinite, [*curve, float(method_nll)])):
        raise ConfigError(f"NLLs must be finite; got method {method_nll} and curve {curve}")
    if method_nll >= curve[0]:
        return float(sizes[0])
    for i in range(len(curve) - 1):
        if curve[i + 1] <= method_nll:  # curve[i] > method_nll: the earlier points did not reach it
            return sizes[i] + (sizes[i + 1] - sizes[i]) * (curve[i] - method_nll) / (curve[i] - curve[i + 1])
    return float(sizes[-1])
