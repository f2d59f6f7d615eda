"""Variance-exploding process (Song et al. 2021, eq. 9): ``x_t = x_0 + sigma(t) eps``."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from genflow.errors import ConfigError
from genflow.process.base import PROCESSES
from genflow.process.gaussian import GaussianProcess

__all__ = ["VEProcess"]


@PROCESSES.register("ve")
class VEProcess(GaussianProcess):
    """VE process with geometric noise ``sigma(t) = sigma_min (sigma_max / sigma_min)^t``.

    Args:
        sigma_min: Noise at ``t = 0``.
        sigma_max: Noise at ``t = 1`` (the prior's standard deviation).
    """

    default_grid = "karras"

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 50.0) -> None:
        if not 0.0 < sigma_min < sigma_max:
            raise ConfigError(f"VEProcess needs 0 < sigma_min < sigma_max; got {sigma_min}, {sigma_max}")
        self.sigma_min, self.sigma_max = float(sigma_min), float(sigma_max)
        self._log_ratio = math.log(self.sigma_max / self.sigma_min)

    def alpha(self, t: Tensor) -> Tensor:
        return torch.ones_like(t)

    def sigma(self, t: Tensor) -> Tensor:
        return self.sigma_min * torch.exp(self._log_ratio * t)

    def log_alpha_derivative(self, t: Tensor) -> Tensor:
        return torch.zeros_like(t)

    def sigma2_derivative(self, t: Tensor) -> Tensor:
        return 2.0 * self._log_ratio * self.sigma(t) ** 2

    def log_snr(self, t: Tensor) -> Tensor:
        return -(math.log(self.sigma_min) + self._log_ratio * t)

    def t_from_log_snr(self, lam: Tensor) -> Tensor:
        lam = torch.as_tensor(lam, dtype=torch.float64)
        return (-lam - math.log(self.sigma_min)) / self._log_ratio
