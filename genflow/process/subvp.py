"""Sub-VP process (Song et al. 2021, eq. 11): VP's mean, variance ``(1 - alpha^2)^2``."""

from __future__ import annotations

import torch
from torch import Tensor

from genflow.errors import ConfigError
from genflow.process.base import PROCESSES
from genflow.process.gaussian import GaussianProcess

__all__ = ["SubVPProcess"]


@PROCESSES.register("subvp")
class SubVPProcess(GaussianProcess):
    """Sub-VP process with the linear beta schedule.

    ``alpha(t) = exp(-B(t)/2)``, ``sigma(t) = 1 - exp(-B(t))`` with
    ``B(t) = int_0^t beta``; forward SDE ``dx = -beta x / 2 dt + sqrt(beta (1 - e^{-2B})) dW``.

    Args:
        beta_min: ``beta(0)``.
        beta_max: ``beta(1)``.
    """

    default_grid = "logsnr"
    t_min = 1e-3

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0) -> None:
        if not 0.0 < beta_min < beta_max:
            raise ConfigError(f"SubVPProcess needs 0 < beta_min < beta_max; got {beta_min}, {beta_max}")
        self.beta_min, self.beta_max = float(beta_min), float(beta_max)

    def _integral(self, t: Tensor) -> Tensor:
        return self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t**2

    def _beta(self, t: Tensor) -> Tensor:
        return self.beta_min + (self.beta_max - self.beta_min) * t

    def alpha(self, t: Tensor) -> Tensor:
        return torch.exp(-0.5 * self._integral(t))

    def sigma(self, t: Tensor) -> Tensor:
        return -torch.expm1(-self._integral(t))

    def log_alpha_derivative(self, t: Tensor) -> Tensor:
        return -0.5 * self._beta(t)

    def sigma2_derivative(self, t: Tensor) -> Tensor:
        integral = self._integral(t)
        return 2.0 * (-torch.expm1(-integral)) * self._beta(t) * torch.exp(-integral)
