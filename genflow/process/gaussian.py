"""Gaussian diffusion processes ``x_t = alpha(t) x_0 + sigma(t) eps``.

One abstract class holds everything that follows from ``alpha`` and ``sigma``:
marginals, the prior, the forward SDE ``dx = f(t) x dt + g(t) dW``, the
reverse-time SDE and the probability-flow ODE built from a score, the
posterior used by ancestral samplers, and the conversions between the five
prediction parameterisations.

References:
    Song et al. 2021, "Score-Based Generative Modeling through SDEs", eqs. (5), (6), (13).
    Kingma et al. 2021, "Variational Diffusion Models" (log-SNR, posterior).
    Salimans & Ho 2022, "Progressive Distillation" (v-prediction).
    Lipman et al. 2023 / Liu et al. 2023 (velocity of the conditional path).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from genflow.errors import ComponentError, ParameterizationError
from genflow.process.base import Process, broadcast_time
from genflow.random import standard_normal
from genflow.validation import times_validated

__all__ = ["GaussianProcess", "PARAMETERIZATIONS", "ForwardSDE", "ReverseSDE", "ProbabilityFlowODE"]

PARAMETERIZATIONS: tuple[str, ...] = ("eps", "x0", "v", "score", "velocity")

ScoreFn = Callable[[Tensor, Tensor], Tensor]


def check_parameterization(kind: str) -> str:
    """Raise :class:`ParameterizationError` unless ``kind`` is a known parameterisation."""
    if kind not in PARAMETERIZATIONS:
        raise ParameterizationError(f"parameterization must be one of {', '.join(PARAMETERIZATIONS)}; got {kind!r}")
    return kind


class GaussianProcess(Process):
    """Abstract Gaussian process with marginal ``N(alpha(t) x0, sigma(t)^2 I)``.

    Subclasses implement four scalar functions of ``t`` (elementwise on tensors):
    :meth:`alpha`, :meth:`sigma`, :meth:`log_alpha_derivative` and
    :meth:`sigma2_derivative`. Everything else is derived here.
    """

    default_grid: ClassVar[str] = "uniform"
    """Name of the time grid (in ``TIME_GRIDS``) a sampler uses by default."""

    @abstractmethod
    def alpha(self, t: Tensor) -> Tensor:
        """Signal scale ``alpha(t)``."""

    @abstractmethod
    def sigma(self, t: Tensor) -> Tensor:
        """Noise scale ``sigma(t)``."""

    @abstractmethod
    def log_alpha_derivative(self, t: Tensor) -> Tensor:
        """``d log alpha / dt``, the drift coefficient ``f(t)`` of the forward SDE."""

    @abstractmethod
    def sigma2_derivative(self, t: Tensor) -> Tensor:
        """``d sigma^2 / dt``."""

    # ----------------------------------------------------------------- schedule
    def log_snr(self, t: Tensor) -> Tensor:
        """Half log signal-to-noise ratio ``lambda(t) = log(alpha / sigma)`` (decreasing in t)."""
        return torch.log(self.alpha(t)) - torch.log(self.sigma(t))

    def t_from_log_snr(self, lam: Tensor) -> Tensor:
        """Inverse of :meth:`log_snr` by bisection on ``[t_min, t_max]`` (exact forms override it)."""
        lam = torch.as_tensor(lam, dtype=torch.float64)
        lo = torch.full_like(lam, self.t_min)
        hi = torch.full_like(lam, self.t_max)
        with times_validated():  # every bisection point lies in [t_min, t_max]
            for _ in range(64):
                mid = 0.5 * (lo + hi)
                above = self.log_snr(mid) > lam  # log_snr decreases in t: the root is to the right
                lo = torch.where(above, mid, lo)
                hi = torch.where(above, hi, mid)
        return 0.5 * (lo + hi)

    def diffusion_squared(self, t: Tensor) -> Tensor:
        """``g(t)^2 = d sigma^2/dt - 2 f(t) sigma^2`` (Song et al. 2021, eq. 29 generalised)."""
        return self.sigma2_derivative(t) - 2.0 * self.log_alpha_derivative(t) * self.sigma(t) ** 2

    # ----------------------------------------------------------------- marginals
    def marginal(self, x0: Tensor, t: Tensor | float, *, x1: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if x1 is not None:
            raise ComponentError(f"{type(self).__name__} is not a bridge: x1 must be None; got a {type(x1).__name__}")
        t = self._time_for(x0, t)
        return broadcast_time(self.alpha(t), x0) * x0, broadcast_time(self.sigma(t), x0)

    def prior(
        self,
        shape: tuple[int, ...],
        generator: torch.Generator,
        *,
        t: float | None = None,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> Tensor:
        """Draw from ``N(0, sigma(t)^2 I)`` (``t`` defaults to ``t_max``), the prior samplers start from.

        This is the marginal at ``t`` only where the noise dominates the data
        (``alpha(t)^2 Var(x0) << sigma(t)^2``); to start lower, from noised data
        (SDEdit), pass ``x_init`` to :meth:`genflow.sampling.Sampler.sample`.
        Noise is drawn on the generator's device and moved (:func:`genflow.random.standard_normal`).

        Raises:
            GeneratorRequiredError: ``generator`` is not a ``torch.Generator``.
        """
        dtype = dtype or torch.get_default_dtype()
        device = device or getattr(generator, "device", "cpu")
        scale = float(self.sigma(torch.tensor(self.t_max if t is None else float(t), dtype=torch.float64)))
        return scale * standard_normal(
            shape, generator, dtype=dtype, device=device, where=f"{type(self).__name__}.prior"
        )

    def posterior(self, x0: Tensor, xt: Tensor, t: Tensor, s: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and std of ``q(x_s | x_t, x_0)`` for ``s < t`` (Kingma et al. 2021, eq. 30-33).

        With ``alpha_ts = alpha_t / alpha_s`` and ``sigma_ts^2 = sigma_t^2 - alpha_ts^2 sigma_s^2``:
        mean ``= alpha_ts sigma_s^2 / sigma_t^2 x_t + alpha_s sigma_ts^2 / sigma_t^2 x_0`` and
        variance ``= sigma_ts^2 sigma_s^2 / sigma_t^2``.
        """
        a_t, s_t, a_s, s_s = (
            broadcast_time(c, xt) for c in (self.alpha(t), self.sigma(t), self.alpha(s), self.sigma(s))
        )
        a_ts = a_t / a_s
        var_ts = (s_t**2 - a_ts**2 * s_s**2).clamp_min(0.0)
        mean = a_ts * s_s**2 / s_t**2 * xt + a_s * var_ts / s_t**2 * x0
        std = (var_ts * s_s**2 / s_t**2).sqrt()
        return mean, std

    # ----------------------------------------------------------- parameterisations
    def to_x0_eps(self, prediction: Tensor, kind: str, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """Turn a model prediction of any parameterisation into ``(x0_hat, eps_hat)``.

        Args:
            prediction: Model output, shape of ``x``.
            kind: One of ``eps``, ``x0``, ``v``, ``score``, ``velocity``.
            x: The noisy state ``x_t``.
            t: Times, shape ``(batch,)``.
        """
        check_parameterization(kind)
        a, s = broadcast_time(self.alpha(t), x), broadcast_time(self.sigma(t), x)
        if kind == "eps":
            return (x - s * prediction) / a, prediction
        if kind == "x0":
            return prediction, (x - a * prediction) / s
        if kind == "score":
            eps = -s * prediction
            return (x - s * eps) / a, eps
        if kind == "v":  # v = alpha eps - sigma x0
            norm = a**2 + s**2
            return (a * x - s * prediction) / norm, (s * x + a * prediction) / norm
        # velocity u = alpha' x0 + sigma' eps, the conditional path's time derivative
        da, ds = self._scale_derivatives(t, x)
        det = a * ds - s * da
        return (ds * x - s * prediction) / det, (a * prediction - da * x) / det

    def from_x0_eps(self, x0: Tensor, eps: Tensor, kind: str, x: Tensor, t: Tensor) -> Tensor:
        """Express ``(x0, eps)`` in the parameterisation ``kind`` (inverse of :meth:`to_x0_eps`)."""
        check_parameterization(kind)
        if kind == "eps":
            return eps
        if kind == "x0":
            return x0
        a, s = broadcast_time(self.alpha(t), x), broadcast_time(self.sigma(t), x)
        if kind == "score":
            return -eps / s
        if kind == "v":
            return a * eps - s * x0
        da, ds = self._scale_derivatives(t, x)
        return da * x0 + ds * eps

    def convert(self, prediction: Tensor, source: str, target: str, x: Tensor, t: Tensor) -> Tensor:
        """Convert a prediction between parameterisations (identity when they match)."""
        check_parameterization(target)
        if source == target:
            check_parameterization(source)
            return prediction
        return self.from_x0_eps(*self.to_x0_eps(prediction, source, x, t), target, x, t)

    def _scale_derivatives(self, t: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(d alpha/dt, d sigma/dt)`` broadcast against ``x``."""
        da = self.alpha(t) * self.log_alpha_derivative(t)
        ds = self.sigma2_derivative(t) / (2.0 * self.sigma(t))
        return broadcast_time(da, x), broadcast_time(ds, x)

    # -------------------------------------------------------------- SDE and ODE
    def forward_sde(self) -> ForwardSDE:
        """The forward SDE ``dx = f(t) x dt + g(t) dW`` whose marginals are this process's."""
        return ForwardSDE(self)

    def reverse_sde(self, score: ScoreFn) -> ReverseSDE:
        """Reverse-time SDE ``dx = [f x - g^2 score] dt + g dW_bar`` (Song et al. 2021, eq. 6)."""
        return ReverseSDE(self, score)

    def probability_flow(self, score: ScoreFn) -> ProbabilityFlowODE:
        """Probability-flow ODE ``dx/dt = f x - g^2 score / 2`` (Song et al. 2021, eq. 13)."""
        return ProbabilityFlowODE(self, score)


def _coefficients(process: GaussianProcess, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
    """``(f(t), g(t)^2)`` broadcast against ``x``, for scalar or per-sample ``t``."""
    t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
    t = t.expand(x.shape[0]) if t.ndim == 0 else t
    return broadcast_time(process.log_alpha_derivative(t), x), broadcast_time(process.diffusion_squared(t), x)


@dataclass(frozen=True)
class ForwardSDE:
    """``dx = f(t) x dt + g(t) dW`` of a :class:`GaussianProcess` (additive noise)."""

    process: GaussianProcess
    additive_noise: ClassVar[bool] = True

    def drift(self, x: Tensor, t: Tensor) -> Tensor:
        return _coefficients(self.process, x, t)[0] * x

    def diffusion(self, x: Tensor, t: Tensor) -> Tensor:
        return _coefficients(self.process, x, t)[1].sqrt().expand_as(x)


@dataclass(frozen=True)
class ReverseSDE:
    """Reverse-time SDE of a process given a score function ``score(x, t)``; same diffusion as forward."""

    process: GaussianProcess
    score: ScoreFn
    additive_noise: ClassVar[bool] = True

    def drift(self, x: Tensor, t: Tensor) -> Tensor:
        f, g2 = _coefficients(self.process, x, t)
        return f * x - g2 * self.score(x, t)

    def diffusion(self, x: Tensor, t: Tensor) -> Tensor:
        return _coefficients(self.process, x, t)[1].sqrt().expand_as(x)


@dataclass(frozen=True)
class ProbabilityFlowODE:
    """Probability-flow ODE of a process given a score function; callable as ``field(x, t)``."""

    process: GaussianProcess
    score: ScoreFn

    def __call__(self, x: Tensor, t: Tensor) -> Tensor:
        f, g2 = _coefficients(self.process, x, t)
        return f * x - 0.5 * g2 * self.score(x, t)
