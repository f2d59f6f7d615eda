"""Brownian bridge between paired end points ``x_0`` (t=0) and ``x_1`` (t=1).

``q(x_t | x_0, x_1) = N((1 - t) x_0 + t x_1, beta t (1 - t) I)``, the process of
Diffusion Bridge Networks and I2SB, with ``sigma_t^2 = beta t`` the variance of
the un-pinned Brownian motion used by the noise-prediction target.

References:
    Liu et al. 2023, "I2SB: Image-to-Image Schroedinger Bridge", eq. (11);
    Kim et al. 2024, "Diffusion Bridge Network" (logit bridge).
"""

from __future__ import annotations

import torch
from torch import Tensor

from genflow.errors import ComponentError, ConfigError, ShapeError
from genflow.process.base import PROCESSES, Process, broadcast_time
from genflow.validation import check_time

__all__ = ["BrownianBridge"]


@PROCESSES.register("brownian_bridge")
class BrownianBridge(Process):
    """Brownian bridge with constant rate ``beta``.

    Args:
        beta: Diffusion rate (1e-4 for DBN on CIFAR-10).
    """

    def __init__(self, beta: float = 1e-4) -> None:
        if beta <= 0:
            raise ConfigError(f"BrownianBridge beta must be > 0; got {beta}")
        self.beta = float(beta)

    def marginal(self, x0: Tensor, t: Tensor | float, *, x1: Tensor | None = None) -> tuple[Tensor, Tensor]:
        t = self._time_for(x0, t)
        if x1 is None:
            raise ComponentError(
                "BrownianBridge.marginal needs the paired end point x1 (the source at t = 1); got None"
            )
        if x1.shape != x0.shape:
            raise ShapeError(f"x1 must have x0's shape {tuple(x0.shape)}; got {tuple(x1.shape)}")
        tb = broadcast_time(t, x0)
        return (1.0 - tb) * x0 + tb * x1, (self.beta * tb * (1.0 - tb)).sqrt()

    def sigma(self, t: Tensor) -> Tensor:
        """``sigma_t = sqrt(beta t)``, the scale of the noise-prediction target ``(x_t - x_0) / sigma_t``."""
        return (self.beta * t).sqrt()

    def posterior(self, x0: Tensor, xt: Tensor, t: Tensor | float, s: Tensor | float) -> tuple[Tensor, Tensor]:
        """Mean and std of ``q(x_s | x_0, x_t)`` for ``0 <= s < t``: the bridge from ``x_0`` to ``x_t``.

        Mean ``x_0 + (s / t)(x_t - x_0)``, variance ``beta s (t - s) / t = beta s (1 - s / t)``. At ``t = 0``
        (so ``s = 0``) the bridge has collapsed onto ``x_0``: the ratio ``s / t`` is taken as 0 there instead of
        dividing by zero.
        """
        t = broadcast_time(check_time(t, xt.shape[0], like=xt), xt)
        s = broadcast_time(check_time(s, xt.shape[0], like=xt), xt)
        ratio = torch.where(t > 0, s / t.clamp_min(torch.finfo(t.dtype).tiny), torch.zeros_like(t))
        mean = x0 + ratio * (xt - x0)
        return mean, (self.beta * s * (1.0 - ratio)).clamp_min(0.0).sqrt()

    def x0_from_eps(self, xt: Tensor, eps: Tensor, t: Tensor | float) -> Tensor:
        """Invert the noise-prediction target: ``x_0 = x_t - sigma_t eps``."""
        t = broadcast_time(check_time(t, xt.shape[0], like=xt), xt)
        return xt - self.sigma(t) * eps

    def eps_from_x0(self, xt: Tensor, x0: Tensor, t: Tensor | float) -> Tensor:
        """The noise-prediction target ``(x_t - x_0) / sigma_t`` (0 at ``t = 0``, where ``x_t = x_0``)."""
        t = broadcast_time(check_time(t, xt.shape[0], like=xt), xt)
        sigma = self.sigma(t)
        return torch.where(sigma > 0, (xt - x0) / sigma.clamp_min(torch.finfo(sigma.dtype).tiny), 0.0)
