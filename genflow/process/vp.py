"""Variance-preserving process: ``alpha^2 + sigma^2 = 1``.

Schedules: ``linear`` (``beta(t) = beta_min + t (beta_max - beta_min)``, Ho et al.
2020 / Song et al. 2021), ``cosine`` (Nichol & Dhariwal 2021, eq. 17) and
``discrete`` DDPM betas, where step ``n`` of ``N`` (1-based, after ``n`` noising
steps) sits at ``t = n / N`` and ``log alpha`` is interpolated linearly between
steps (as in DPM-Solver's discrete schedule).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from genflow.errors import ConfigError
from genflow.process.base import PROCESSES
from genflow.process.gaussian import GaussianProcess

__all__ = ["VPProcess"]

_SCHEDULES = ("linear", "cosine", "discrete")


@PROCESSES.register("vp")
class VPProcess(GaussianProcess):
    """Variance-preserving (DDPM) process.

    Args:
        schedule: ``linear``, ``cosine`` or ``discrete``.
        beta_min: Linear schedule's ``beta(0)``.
        beta_max: Linear schedule's ``beta(1)``.
        cosine_offset: Cosine schedule's offset ``s`` (0.008 in the paper).
        betas: Discrete schedule's betas, shape ``(N,)`` in ``(0, 1)``.

    Raises:
        ConfigError: unknown schedule, invalid betas or beta range.
    """

    default_grid = "logsnr"

    def __init__(
        self,
        schedule: str = "linear",
        beta_min: float = 0.1,
        beta_max: float = 20.0,
        cosine_offset: float = 0.008,
        betas: Sequence[float] | Tensor | None = None,
    ) -> None:
        if schedule not in _SCHEDULES:
            raise ConfigError(f"VPProcess schedule must be one of {', '.join(_SCHEDULES)}; got {schedule!r}")
        self.schedule = schedule
        self.t_min = 1e-3
        self.t_max = 1.0
        if schedule == "linear":
            if not 0.0 < beta_min < beta_max:
                raise ConfigError(
                    f"VPProcess needs 0 < beta_min < beta_max; got beta_min={beta_min}, beta_max={beta_max}"
                )
            self.beta_min, self.beta_max = float(beta_min), float(beta_max)
        elif schedule == "cosine":
            if cosine_offset <= 0:
                raise ConfigError(f"VPProcess cosine_offset must be > 0; got {cosine_offset}")
            self.cosine_offset = float(cosine_offset)
            self.t_max = 0.9946  # alpha(1) = 0 exactly; stop where log-SNR is still finite (DPM-Solver's T)
        else:
            if betas is None:
                raise ConfigError("VPProcess(schedule='discrete') needs betas; use VPProcess.from_betas(betas)")
            b = torch.as_tensor(betas, dtype=torch.float64).flatten()
            if b.numel() < 2 or not bool(((b > 0) & (b < 1)).all()):
                raise ConfigError(
                    f"betas must be a 1-D sequence of at least 2 values in (0, 1); got {b.numel()} values"
                )
            # log alpha at knots t = n / N, n = 0..N (log alpha(0) = 0)
            self._log_alpha_knots = torch.cat([b.new_zeros(1), 0.5 * torch.cumsum(torch.log1p(-b), 0)])
            self._n_steps = b.numel()
            self.t_min = 1.0 / self._n_steps

    @classmethod
    def from_betas(cls, betas: Sequence[float] | Tensor) -> VPProcess:
        """DDPM-style discrete schedule from its betas (step ``n`` of ``N`` at ``t = n/N``)."""
        return cls(schedule="discrete", betas=betas)

    # log alpha and its derivative per schedule ------------------------------------
    def _log_alpha(self, t: Tensor) -> Tensor:
        if self.schedule == "linear":
            return -0.5 * (self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t**2)
        if self.schedule == "cosine":
            s = self.cosine_offset
            return torch.log(torch.cos(0.5 * math.pi * (t + s) / (1 + s))) - math.log(
                math.cos(0.5 * math.pi * s / (1 + s))
            )
        idx, frac, knots = self._segment(t)
        return knots[idx] + frac * (knots[idx + 1] - knots[idx])

    def log_alpha_derivative(self, t: Tensor) -> Tensor:
        if self.schedule == "linear":
            return -0.5 * (self.beta_min + (self.beta_max - self.beta_min) * t)
        if self.schedule == "cosine":
            s = self.cosine_offset
            return -0.5 * math.pi / (1 + s) * torch.tan(0.5 * math.pi * (t + s) / (1 + s))
        idx, _, knots = self._segment(t)
        return (knots[idx + 1] - knots[idx]) * self._n_steps

    def _segment(self, t: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        knots = self._log_alpha_knots.to(device=t.device, dtype=t.dtype)
        pos = t * self._n_steps
        idx = pos.floor().long().clamp(0, self._n_steps - 1)
        return idx, pos - idx.to(t.dtype), knots

    # GaussianProcess --------------------------------------------------------------
    def alpha(self, t: Tensor) -> Tensor:
        return torch.exp(self._log_alpha(t))

    def sigma(self, t: Tensor) -> Tensor:
        return torch.sqrt(-torch.expm1(2.0 * self._log_alpha(t)))

    def log_snr(self, t: Tensor) -> Tensor:
        log_alpha = self._log_alpha(t)
        return log_alpha - 0.5 * torch.log(-torch.expm1(2.0 * log_alpha))

    def sigma2_derivative(self, t: Tensor) -> Tensor:
        return -2.0 * torch.exp(2.0 * self._log_alpha(t)) * self.log_alpha_derivative(t)

    def diffusion_squared(self, t: Tensor) -> Tensor:
        return -2.0 * self.log_alpha_derivative(t)  # beta(t); exact for alpha^2 + sigma^2 = 1

    def t_from_log_snr(self, lam: Tensor) -> Tensor:
        if self.schedule != "linear":
            return super().t_from_log_snr(lam)
        lam = torch.as_tensor(lam, dtype=torch.float64)
        integral = torch.nn.functional.softplus(-2.0 * lam)  # int_0^t beta = -log alpha^2
        db = self.beta_max - self.beta_min
        return (-self.beta_min + torch.sqrt(self.beta_min**2 + 2.0 * db * integral)) / db
