"""A process's schedule read once on a sampling grid, and the predictions on it.

Native diffusion samplers only ever need the schedule at the grid points. A
discrete-beta VP process interpolates ``log alpha`` at every query, and a model
adapter that converts each prediction evaluates ``alpha`` and ``sigma`` over
the whole batch: a dozen schedule look-ups per step cost more than the update
itself. :class:`GridSchedule` evaluates ``alpha``, ``sigma`` and the half
log-SNR ``lambda`` for all grid points in one vectorised float64 call per solve
and keeps them as Python floats (a step is then the update arithmetic only);
:class:`GridPredictor` turns a model's raw output into ``(x0, eps)`` with those
floats.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from genflow.errors import ComponentError
from genflow.process.gaussian import GaussianProcess

__all__ = ["GridSchedule", "GridPredictor"]


class GridSchedule:
    """``alpha``, ``sigma`` and ``lambda = log(alpha / sigma)`` at every point of a grid, as floats.

    Args:
        process: The Gaussian process.
        ts: The decreasing grid, shape ``(steps + 1,)``.

    Attributes:
        process: The process.
        ts: The grid as given (device and dtype of the state).
        times / alpha / sigma / log_snr: Lists of ``steps + 1`` floats (float64 accuracy).
        steps: Number of steps ``len(ts) - 1``.
    """

    def __init__(self, process: GaussianProcess, ts: Tensor) -> None:
        self.process = process
        self.ts = ts
        grid = ts.detach().to(device="cpu", dtype=torch.float64).clamp(0.0, 1.0)  # one host copy per solve
        self.times: list[float] = grid.tolist()
        self.alpha: list[float] = process.alpha(grid).tolist()
        self.sigma: list[float] = process.sigma(grid).tolist()
        self.log_snr: list[float] = process.log_snr(grid).tolist()
        self.steps = len(self.times) - 1

    def posterior_coefficients(self) -> tuple[list[float], list[float], list[float]]:
        """Per step ``k``: ``(c_xt, c_x0, std)`` of ``q(x_{k+1} | x_k, x0) = N(c_xt x_k + c_x0 x0, std^2)``.

        Read from :meth:`GaussianProcess.posterior` once for all steps (Kingma et al. 2021, eq. 30-33).
        """
        t, s = self.ts[:-1].to(torch.float64).cpu(), self.ts[1:].to(torch.float64).cpu()
        one, zero = torch.ones_like(t), torch.zeros_like(t)
        c_xt = self.process.posterior(zero, one, t, s)[0]
        c_x0, std = self.process.posterior(one, zero, t, s)
        return c_xt.tolist(), c_x0.tolist(), std.tolist()


_SCALAR_CONVERSIONS = ("eps", "x0", "v", "score")


class GridPredictor:
    """``(x0_hat, eps_hat)`` at grid point ``k``, converted with the schedule's floats.

    A denoiser that exposes its raw ``prediction(x, t)`` and a ``model`` declaring
    its ``parameterization`` (as :class:`genflow.sampling.ModelDenoiser` does) is
    converted here for ``eps``, ``x0``, ``v`` and ``score`` outputs, with no
    schedule look-up; any other denoiser (or a ``velocity`` model) goes through
    its ``predict(x, t)``. Either way every model call is the denoiser's own
    (counted) call. Times reach the model clamped into ``[0, 1]``, in ``x``'s
    dtype and device, shape ``(batch,)``.

    Args:
        denoiser: Has ``predict(x, t) -> (x0, eps)``; optionally ``prediction`` and ``model``.
        schedule: The grid's schedule.
        like: A state ``(batch, ...)`` fixing batch, dtype and device.

    Raises:
        ComponentError: ``denoiser`` has no callable ``predict``.
    """

    def __init__(self, denoiser: Any, schedule: GridSchedule, like: Tensor) -> None:
        if not callable(getattr(denoiser, "predict", None)):
            raise ComponentError(
                f"a diffusion sampler needs a denoiser with predict(x, t); got {type(denoiser).__name__}"
            )
        self.denoiser = denoiser
        self.schedule = schedule
        self.batch = like.shape[0]
        self.model_times = schedule.ts.to(dtype=like.dtype, device=like.device).clamp(0.0, 1.0)
        raw = getattr(denoiser, "prediction", None)
        kind = getattr(getattr(denoiser, "model", None), "parameterization", None)
        self._raw = raw if callable(raw) and kind in _SCALAR_CONVERSIONS else None
        self._kind = kind
        self.calls = 0

    def __call__(self, x: Tensor, k: int) -> tuple[Tensor, Tensor]:
        """``(x0_hat, eps_hat)`` at ``x`` and grid time ``ts[k]`` (one model call, counted in ``calls``)."""
        self.calls += 1
        t = self.model_times[k].expand(self.batch)
        if self._raw is None:
            return self.denoiser.predict(x, t)
        out = self._raw(x, t)
        a, s = self.schedule.alpha[k], self.schedule.sigma[k]
        if self._kind == "eps":  # x = alpha x0 + sigma eps
            return (x - s * out) / a, out
        if self._kind == "x0":
            return out, (x - a * out) / s
        if self._kind == "score":  # eps = -sigma score
            return (x + (s * s) * out) / a, -s * out
        norm = a * a + s * s  # v = alpha eps - sigma x0 (Salimans & Ho 2022)
        return (a * x - s * out) / norm, (s * x + a * out) / norm
