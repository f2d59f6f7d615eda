"""Time grids for sampling: from ``t_start`` (noise side) down to ``t_end`` (data side).

* ``uniform``: equal steps in ``t``.
* ``quadratic``: ``t`` quadratic in the step index, dense near the data (DDIM's
  "quadratic" CIFAR-10 schedule, Song et al. 2021a, Appendix D.2).
* ``logsnr``: equal steps in ``lambda = log(alpha / sigma)`` (DPM-Solver, Lu et
  al. 2022, Sec. 3.4), the right default for few-step VP sampling.
* ``karras``: ``(sigma/alpha)^(1/rho)`` uniform (Karras et al. 2022, eq. 5),
  the default for VE.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor

from genflow.config import Configurable
from genflow.errors import ConfigError, TimeGridError
from genflow.process.gaussian import GaussianProcess
from genflow.registry import Registry
from genflow.validation import check_instance, check_steps

__all__ = ["TimeGrid", "TIME_GRIDS", "UniformGrid", "QuadraticGrid", "LogSNRGrid", "KarrasGrid"]


class TimeGrid(Configurable, ABC):
    """Builds a decreasing grid of ``steps + 1`` times for a process."""

    def __call__(
        self,
        process: GaussianProcess,
        steps: int,
        *,
        t_start: float | None = None,
        t_end: float | None = None,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str | None = None,
    ) -> Tensor:
        """Return the grid, shape ``(steps + 1,)``, from ``t_start`` to ``t_end``.

        Defaults are the process's ``t_max`` and ``t_min``.

        Raises:
            TimeGridError: ``steps`` not an int in ``[1, MAX_STEPS]`` (checked before anything is
                allocated), ``t_start <= t_end`` or times outside ``[0, 1]``.
        """
        check_instance(process, GaussianProcess, "process")
        check_steps(steps)
        t_start = process.t_max if t_start is None else float(t_start)
        t_end = process.t_min if t_end is None else float(t_end)
        if not 0.0 <= t_end < t_start <= 1.0:
            raise TimeGridError(f"need 0 <= t_end < t_start <= 1; got t_start={t_start}, t_end={t_end}")
        grid = self._grid(process, steps, t_start, t_end).to(torch.float64)
        grid[0], grid[-1] = t_start, t_end
        if not bool((grid[1:] < grid[:-1]).all()):
            raise TimeGridError(
                f"{type(self).__name__} produced a non-decreasing grid for {steps} steps: {grid.tolist()}"
            )
        return grid.to(dtype=dtype, device=device)

    @abstractmethod
    def _grid(self, process: GaussianProcess, steps: int, t_start: float, t_end: float) -> Tensor:
        """The grid in float64 (its end points are reset exactly by the caller)."""


TIME_GRIDS: Registry[TimeGrid] = Registry("time grid", TimeGrid)


def _fractions(steps: int) -> Tensor:
    return torch.linspace(0.0, 1.0, steps + 1, dtype=torch.float64)


@TIME_GRIDS.register("uniform")
class UniformGrid(TimeGrid):
    """Equal steps in ``t``."""

    def __init__(self) -> None:
        pass

    def _grid(self, process, steps, t_start, t_end):
        return t_start + (t_end - t_start) * _fractions(steps)


@TIME_GRIDS.register("quadratic")
class QuadraticGrid(TimeGrid):
    """``t_i = t_end + (t_start - t_end) (1 - i/N)^2``: small steps near the data."""

    def __init__(self) -> None:
        pass

    def _grid(self, process, steps, t_start, t_end):
        return t_end + (t_start - t_end) * (1.0 - _fractions(steps)) ** 2


@TIME_GRIDS.register("logsnr")
class LogSNRGrid(TimeGrid):
    """Equal steps in the half log-SNR ``lambda(t)``."""

    def __init__(self) -> None:
        pass

    def _grid(self, process, steps, t_start, t_end):
        ends = process.log_snr(torch.tensor([t_start, t_end], dtype=torch.float64))
        if not bool(torch.isfinite(ends).all()):
            raise TimeGridError(
                f"logsnr grid needs a finite log-SNR at both ends; got lambda({t_start})={float(ends[0])}, "
                f"lambda({t_end})={float(ends[1])}: use t_end > 0 or another grid"
            )
        lam = ends[0] + (ends[1] - ends[0]) * _fractions(steps)
        return process.t_from_log_snr(lam)


@TIME_GRIDS.register("karras")
class KarrasGrid(TimeGrid):
    """Karras et al. (2022) grid: ``sigma/alpha`` interpolated in ``rho``-th root space.

    Args:
        rho: Curvature (7 in the paper); larger puts more steps near the data.
    """

    def __init__(self, rho: float = 7.0) -> None:
        if rho <= 0:
            raise ConfigError(f"KarrasGrid rho must be > 0; got {rho}")
        self.rho = float(rho)

    def _grid(self, process, steps, t_start, t_end):
        ends = torch.exp(-process.log_snr(torch.tensor([t_start, t_end], dtype=torch.float64)))  # sigma / alpha
        if not bool(torch.isfinite(ends[0])):
            raise TimeGridError(
                f"karras grid needs a finite sigma/alpha at t_start={t_start} (alpha is 0 there): use t_start < 1"
            )
        lo, hi = ends[1] ** (1.0 / self.rho), ends[0] ** (1.0 / self.rho)
        ratio = (hi + (lo - hi) * _fractions(steps)) ** self.rho
        return process.t_from_log_snr(-torch.log(ratio))
