"""Calibration metrics of a predictive distribution: accuracy, NLL, Brier, ECE, temperature scaling.

Every metric takes probabilities ``probs`` of shape ``(N, C)`` (non-negative,
rows summing to 1) and integer labels ``(N,)`` in ``[0, C)``, checks them at the
boundary and returns a Python float. With ``p_n = probs[n]``, ``y_n = labels[n]``
and ``c_n = max_k p_nk`` (the confidence), over the ``N`` examples:

* ``accuracy = 1/N sum_n [argmax_k p_nk = y_n]``
* ``nll = -1/N sum_n log p_{n y_n}``
* ``brier = 1/N sum_n sum_k (p_nk - [k = y_n])^2``
* ``ece = sum_b |B_b| / N |acc(B_b) - conf(B_b)|`` over ``B`` equal-width confidence bins
  ``(b/B, (b+1)/B]`` (a confidence of exactly 0 falls in the first bin).

Temperature scaling (Guo et al. 2017) fits one ``T > 0`` minimising the validation NLL
of ``softmax(z / T)``; with ``beta = 1 / T`` the NLL is convex in ``beta``, so the
minimiser is found by bisection on the sign of its derivative.

References:
    Guo et al. 2017, "On Calibration of Modern Neural Networks", eq. (3) (ECE) and sec. 4.2 (temperature scaling);
    Brier 1950, "Verification of Forecasts Expressed in Terms of Probability";
    Naeini et al. 2015, "Obtaining Well Calibrated Probabilities Using Bayesian Binning" (reliability bins).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor

from genflow.errors import ConfigError, DTypeError, LabelError, NonFiniteError, ProbabilityError, ShapeError

__all__ = [
    "check_probabilities",
    "check_labels",
    "accuracy",
    "nll",
    "brier",
    "ece",
    "ReliabilityBins",
    "reliability_bins",
    "fit_temperature",
    "temperature_scaled_metrics",
    "reliability_diagram",
]

ECE_BINS = 15
SUM_TOLERANCE = 1e-4  # float32 softmax rows sum to 1 within ~1e-6; averaging a few keeps them well inside


def _float64_matrix(x: object, name: str, what: str) -> Tensor:
    """``x`` as float64 after checking it is a floating ``(N, C)`` tensor (DTypeError / ShapeError otherwise)."""
    if not isinstance(x, Tensor) or not x.is_floating_point():
        given = x.dtype if isinstance(x, Tensor) else type(x).__name__
        raise DTypeError(f"{name} must be a floating tensor of {what} (N, C); got {given}")
    if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 2:
        raise ShapeError(f"{name} must have shape (N, C) with N >= 1 and C >= 2; got shape {tuple(x.shape)}")
    return x.detach().to(torch.float64)


def check_probabilities(probs: object, name: str = "probs", *, atol: float = SUM_TOLERANCE) -> Tensor:
    """Return ``probs`` as a float64 ``(N, C)`` tensor after checking it is a predictive distribution.

    Raises:
        DTypeError: not a floating tensor.
        ShapeError: not 2-D with ``N >= 1`` and ``C >= 2``.
        ProbabilityError: non-finite or negative entries, or a row that does not sum to 1 (within ``atol``).
    """
    p = _float64_matrix(probs, name, "probabilities")
    if not bool(torch.isfinite(p).all()):
        raise ProbabilityError(f"{name} must be finite probabilities; got non-finite entries")
    if bool((p < 0).any()):
        raise ProbabilityError(f"{name} must be non-negative probabilities; got a minimum of {float(p.min()):.3g}")
    error = float((p.sum(1) - 1.0).abs().max())
    if error > atol:
        raise ProbabilityError(f"{name} rows must sum to 1 (within {atol:g}); got a row off by {error:.3g} "
                               "(pass probabilities, e.g. logits.softmax(-1), not logits)")  # fmt: skip
    return p


def check_labels(labels: object, n: int, num_classes: int, name: str = "labels") -> Tensor:
    """Return ``labels`` as an int64 ``(n,)`` tensor after checking every entry is in ``[0, num_classes)``.

    Raises:
        DTypeError: not an integer tensor (bool is refused).
        ShapeError: not of shape ``(n,)`` (``n`` = the number of predictions).
        LabelError: an entry outside ``[0, num_classes)``.
    """
    integer = isinstance(labels, Tensor) and not (labels.is_floating_point() or labels.is_complex())
    if not integer or labels.dtype == torch.bool:
        given = labels.dtype if isinstance(labels, Tensor) else type(labels).__name__
        raise DTypeError(f"{name} must be an integer tensor of class indices; got {given}")
    if tuple(labels.shape) != (n,):
        raise ShapeError(f"{name} must have shape ({n},) to match the {n} predictions; got shape {tuple(labels.shape)}")
    y = labels.detach().to(torch.int64)
    lo, hi = int(y.min()), int(y.max())
    if lo < 0 or hi >= num_classes:
        raise LabelError(f"{name} must lie in [0, {num_classes}) for {num_classes} classes; got values in [{lo}, {hi}]")
    return y


def _checked(probs: object, labels: object) -> tuple[Tensor, Tensor]:
    p = check_probabilities(probs)
    return p, check_labels(labels, p.shape[0], p.shape[1]).to(p.device)


def accuracy(probs: Tensor, labels: Tensor) -> float:
    """Fraction of examples whose most probable class is the label."""
    p, y = _checked(probs, labels)
    return float((p.argmax(1) == y).double().mean())


def nll(probs: Tensor, labels: Tensor, *, eps: float = 1e-12) -> float:
    """Mean negative log-probability of the label, ``-1/N sum_n log max(p_{n y_n}, eps)``.

    ``eps`` keeps a probability that underflowed to 0 from making the mean infinite.
    """
    p, y = _checked(probs, labels)
    return float(-p.gather(1, y[:, None]).clamp_min(eps).log().mean())


def brier(probs: Tensor, labels: Tensor) -> float:
    """Brier score: squared error to the one-hot label, summed over classes, averaged over examples (in [0, 2])."""
    p, y = _checked(probs, labels)
    onehot = torch.nn.functional.one_hot(y, p.shape[1]).to(p.dtype)
    return float((p - onehot).square().sum(1).mean())


class ReliabilityBins(NamedTuple):
    """Per-bin statistics of the top-label confidence (bins ``(b/B, (b+1)/B]``).

    Attributes:
        counts: ``(B,)`` examples per bin.
        confidence: ``(B,)`` mean confidence per bin (0 for an empty bin).
        accuracy: ``(B,)`` accuracy per bin (0 for an empty bin).
    """

    counts: Tensor
    confidence: Tensor
    accuracy: Tensor


def reliability_bins(probs: Tensor, labels: Tensor, bins: int = ECE_BINS) -> ReliabilityBins:
    """Bin the examples by top-label confidence into ``bins`` equal-width bins on ``[0, 1]``.

    Raises:
        ConfigError: ``bins`` is not a positive int.
    """
    if not isinstance(bins, int) or isinstance(bins, bool) or bins < 1:
        raise ConfigError(f"bins must be an int >= 1; got {bins!r}")
    p, y = _checked(probs, labels)
    confidence, predicted = p.max(1)
    index = (torch.ceil(confidence * bins).long() - 1).clamp(0, bins - 1)
    counts = torch.bincount(index, minlength=bins).to(p.dtype)
    conf_sum = torch.zeros(bins, dtype=p.dtype, device=p.device).index_add_(0, index, confidence)
    hit_sum = torch.zeros(bins, dtype=p.dtype, device=p.device).index_add_(0, index, (predicted == y).to(p.dtype))
    safe = counts.clamp_min(1.0)
    return ReliabilityBins(counts, conf_sum / safe, hit_sum / safe)


def ece(probs: Tensor, labels: Tensor, bins: int = ECE_BINS) -> float:
    """Expected calibration error (top label): ``sum_b |B_b| / N |acc(B_b) - conf(B_b)|`` over ``bins`` bins."""
    stats = reliability_bins(probs, labels, bins)
    return float((stats.counts * (stats.accuracy - stats.confidence).abs()).sum() / stats.counts.sum())


def _check_logits(logits: object, name: str = "logits") -> Tensor:
    z = _float64_matrix(logits, name, "logits")
    if not bool(torch.isfinite(z).all()):
        raise NonFiniteError(f"{name} must be finite; got {int((~torch.isfinite(z)).sum())} non-finite entries")
    return z


def _mean_nll(z: Tensor, y: Tensor, beta: float) -> float:
    return float(torch.nn.functional.cross_entropy(beta * z, y))


def fit_temperature(logits: Tensor, labels: Tensor, *, t_min: float = 1e-2, t_max: float = 1e2) -> float:
    """The temperature ``T`` in ``[t_min, t_max]`` minimising the NLL of ``softmax(logits / T)``.

    With ``beta = 1 / T``, ``NLL(beta) = 1/N sum_n (logsumexp(beta z_n) - beta z_{n y_n})`` is convex and its
    derivative ``1/N sum_n (E_{softmax(beta z_n)}[z] - z_{n y_n})`` is non-decreasing, so bisection on the
    sign of the derivative (in ``log beta``, float64) finds the minimiser, or the end of the range it lies
    beyond (e.g. separable data, where the NLL keeps falling as ``T -> 0``). If the result does not improve
    on ``T = 1`` (inside the range) to within rounding, 1 is returned: scaling never raises the NLL.

    Args:
        logits: ``(N, C)`` validation logits (any real values; log-probabilities work too).
        labels: ``(N,)`` integer labels.
        t_min / t_max: Range of temperatures searched.

    Returns:
        The temperature (float).

    Raises:
        NonFiniteError: non-finite logits.
        ShapeError / DTypeError / LabelError: malformed logits or labels.
        ConfigError: not ``0 < t_min <= 1 <= t_max``.
    """
    if not 0.0 < t_min <= 1.0 <= t_max or not math.isfinite(t_max):
        raise ConfigError(f"need 0 < t_min <= 1 <= t_max < inf; got t_min={t_min}, t_max={t_max}")
    z = _check_logits(logits)
    y = check_labels(labels, z.shape[0], z.shape[1]).to(z.device)
    z_label = z.gather(1, y[:, None]).squeeze(1)

    def slope(log_beta: float) -> float:
        p = torch.softmax(math.exp(log_beta) * z, dim=1)
        return float(((p * z).sum(1) - z_label).mean())

    lo, hi = -math.log(t_max), -math.log(t_min)  # log beta
    if slope(hi) <= 0.0:
        best = hi
    elif slope(lo) >= 0.0:
        best = lo
    else:
        for _ in range(100):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if slope(mid) < 0.0 else (lo, mid)
        best = 0.5 * (lo + hi)
    temperature = min(max(math.exp(-best), t_min), t_max)  # exp(-log t) can round past the range
    return temperature if _mean_nll(z, y, 1.0 / temperature) <= _mean_nll(z, y, 1.0) else 1.0


def temperature_scaled_metrics(
    val_logits: Tensor, val_labels: Tensor, test_logits: Tensor, test_labels: Tensor, bins: int = ECE_BINS
) -> dict[str, float]:
    """Fit ``T`` on validation logits, then the test NLL, ECE and Brier of ``softmax(test_logits / T)``.

    For an ensemble pass the log of its mean probabilities as logits.

    Returns:
        ``{"temperature", "nll", "ece", "brier"}``.
    """
    temperature = fit_temperature(val_logits, val_labels)
    probs = torch.softmax(_check_logits(test_logits, "test_logits") / temperature, dim=1)
    return {"temperature": temperature, "nll": nll(probs, test_labels), "ece": ece(probs, test_labels, bins),
            "brier": brier(probs, test_labels)}  # fmt: skip


def reliability_diagram(
    probs: Tensor, labels: Tensor, path: str | os.PathLike[str], *, bins: int = ECE_BINS, title: str | None = None
) -> Path:
    """Write a reliability diagram (accuracy and confidence per bin, with the ECE) as a PNG.

    Returns:
        The path written (atomically; matplotlib's Agg backend, no display needed).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from genflow.io import atomic_path

    stats = reliability_bins(probs, labels, bins)
    error = ece(probs, labels, bins)
    edges = torch.linspace(0.0, 1.0, bins + 1)
    centres, width = (0.5 * (edges[1:] + edges[:-1])).numpy(), 1.0 / bins
    filled = (stats.counts > 0).cpu().numpy()
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.bar(centres[filled], stats.accuracy.cpu().numpy()[filled], width=width, edgecolor="black", label="accuracy")
    ax.bar(centres[filled], (stats.confidence - stats.accuracy).cpu().numpy()[filled], width=width,
           bottom=stats.accuracy.cpu().numpy()[filled], color="red", alpha=0.3, label="gap to confidence")  # fmt: skip
    ax.plot([0, 1], [0, 1], "k--", linewidth=1)
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence", ylabel="accuracy",
           title=f"{title + ': ' if title else ''}ECE {error:.3f}")  # fmt: skip
    ax.legend(loc="upper left")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return Path(path)
