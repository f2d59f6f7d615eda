"""Linear interpolant (rectified flow): ``x_t = (1 - t) x_0 + t z``.

References:
    Liu et al. 2023, "Flow Straight and Fast" (rectified flow), eq. (1);
    Lipman et al. 2023, "Flow Matching" (conditional velocity ``z - x_0``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from genflow.process.base import PROCESSES
from genflow.process.gaussian import GaussianProcess

__all__ = ["LinearInterpolant"]


@PROCESSES.register("linear_interpolant")
class LinearInterpolant(GaussianProcess):
    """Straight path from data (t=0) to standard normal noise (t=1).

    Its velocity parameterisation is ``u = z - x_0``. End points are singular
    for some parameterisations: ``alpha(1) = 0``, so an ``eps`` or ``score``
    model cannot give ``x0`` at ``t = 1`` (start below it with ``t_start``),
    and ``sigma(0) = 0``, so an ``x0`` model cannot give ``eps`` at ``t = 0``.
    Train it in ``velocity`` (or ``v``) form, which is regular on all of
    ``[0, 1]``. The forward SDE's drift ``-x/(1-t)`` is singular at ``t = 1``:
    sample it with an ODE solver or a native diffusion sampler.
    """

    def __init__(self) -> None:
        pass

    def alpha(self, t: Tensor) -> Tensor:
        return 1.0 - t

    def sigma(self, t: Tensor) -> Tensor:
        return t

    def log_alpha_derivative(self, t: Tensor) -> Tensor:
        return -1.0 / (1.0 - t)

    def sigma2_derivative(self, t: Tensor) -> Tensor:
        return 2.0 * t

    def _scale_derivatives(self, t: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
        # exact d alpha/dt = -1, d sigma/dt = 1 (the generic form divides by sigma at t = 0)
        ones = torch.ones_like(t).reshape(t.shape + (1,) * (x.ndim - t.ndim))
        return -ones, ones

    def t_from_log_snr(self, lam: Tensor) -> Tensor:
        return torch.sigmoid(-torch.as_tensor(lam, dtype=torch.float64))
