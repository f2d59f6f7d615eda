"""Native diffusion samplers that use the process's schedule ``(alpha, sigma)``.

They integrate a :class:`~genflow.solver.base.Denoiser` (a Gaussian process and
an ``(x0, eps)`` prediction) over a decreasing grid. :class:`DiffusionSampler`
is the public abstract base: it validates the denoiser and the grid, reads the
schedule once per solve (:class:`~genflow.solver.grid_schedule.GridSchedule`),
calls the model once at the start of every step and hands the step to the one
hook :meth:`DiffusionSampler._step`. Numerics are declared on the class.

References:
    Ho et al. 2020, "Denoising Diffusion Probabilistic Models" (ancestral sampling);
    Song et al. 2021a, "Denoising Diffusion Implicit Models", eq. (12) and (16).
"""

from __future__ import annotations

import math
from abc import abstractmethod
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from genflow.errors import ComponentError, ConfigError, TimeGridError
from genflow.process.gaussian import GaussianProcess
from genflow.random import standard_normal
from genflow.solver.base import SOLVERS, Solver, raise_if_nonfinite
from genflow.solver.grid_schedule import GridPredictor, GridSchedule

__all__ = ["DiffusionSampler", "SamplerRun", "DDPM", "DDIM", "DeterministicDDIM", "StochasticDDIM"]


@dataclass
class SamplerRun:
    """What a step may use besides the state: the schedule, the model, earlier predictions, randomness.

    Attributes:
        schedule: ``alpha``, ``sigma``, ``log_snr`` at every grid point (floats).
        predict: ``predict(x, k) -> (x0, eps)`` at grid point ``k`` (one counted model call).
        generator: The solve's generator (``None`` for deterministic samplers).
        history: ``x0`` predictions of the steps so far, newest last (at most 3 kept).
        plan: Per-solve data a sampler prepares in :meth:`DiffusionSampler._prepare`.
    """

    schedule: GridSchedule
    predict: GridPredictor
    generator: torch.Generator | None
    history: list[Tensor] = field(default_factory=list)
    plan: Any = None

    def noise(self, like: Tensor, where: str) -> Tensor:
        """Standard normal noise shaped like ``like`` from the run's generator."""
        return standard_normal(like.shape, self.generator, dtype=like.dtype, device=like.device, where=where)


class DiffusionSampler(Solver):
    """Abstract base of the native diffusion samplers (kind ``"diffusion"``).

    A subclass implements :meth:`_step` and declares its numerics on the class:
    ``order``, ``is_stochastic``, ``nfe_per_step`` and ``default_grid`` (the
    registered time grid it was measured to work best on, used when the user
    names none). Per-solve precomputation goes in :meth:`_prepare`.
    """

    kind = "diffusion"
    nfe_per_step = 1

    def field_from(self, denoiser):
        """The denoiser itself: these samplers use the process's schedule and the ``(x0, eps)`` prediction."""
        return denoiser

    def _solve(self, denoiser, x, ts, *, generator, return_trajectory):
        process = getattr(denoiser, "process", None)
        if not isinstance(process, GaussianProcess) or not callable(getattr(denoiser, "predict", None)):
            raise ComponentError(
                f"{type(self).__name__} needs a Denoiser with a GaussianProcess `process` and `predict(x, t)`; "
                f"got {type(denoiser).__name__}"
            )
        if not bool((ts[1:] < ts[:-1]).all()):
            raise TimeGridError(
                f"{type(self).__name__} samples from noise to data: ts must decrease; got {ts.tolist()[:8]}"
            )
        schedule = GridSchedule(process, ts)
        predictor = GridPredictor(denoiser, schedule, x)
        run = SamplerRun(schedule, predictor, generator)
        run.plan = self._prepare(schedule)
        states, finite = [x], [torch.isfinite(x).all()]  # states kept only for a requested trajectory
        for k in range(schedule.steps):
            x0, eps = predictor(x, k)
            run.history = (run.history + [x0])[-3:]
            x = self._step(x, x0, eps, k, run)
            if return_trajectory:
                states.append(x)
            finite.append(torch.isfinite(x).all())  # flags stay on device: one sync at the end
        raise_if_nonfinite(torch.stack(finite), ts)
        return x, torch.stack(states) if return_trajectory else None, predictor.calls

    def _prepare(self, schedule: GridSchedule) -> Any:
        """Per-solve data computed once from the grid's schedule (default: none)."""
        return None

    @abstractmethod
    def _step(self, x: Tensor, x0: Tensor, eps: Tensor, k: int, run: SamplerRun) -> Tensor:
        """One step from ``ts[k]`` to ``ts[k + 1]`` given the prediction ``(x0, eps)`` at ``x``.

        Args:
            x: State at ``ts[k]``.
            x0 / eps: The model's prediction at ``(x, ts[k])``.
            k: Step index.
            run: The schedule, further model calls, earlier predictions and the generator.

        Returns:
            The state at ``ts[k + 1]``.
        """


@SOLVERS.register("ddpm")
class DDPM(DiffusionSampler):
    """Ancestral sampling from the posterior ``q(x_s | x_t, x0_hat)`` (Ho et al. 2020, eq. 6-7)."""

    is_stochastic = True
    default_grid = "uniform"  # measured: docs/benchmarks/default_grids.md

    def __init__(self) -> None:
        pass

    def _prepare(self, schedule):
        return schedule.posterior_coefficients()

    def _step(self, x, x0, eps, k, run):
        c_xt, c_x0, std = (column[k] for column in run.plan)
        return c_xt * x + c_x0 * x0 + std * run.noise(x, "DDPM.solve")


@SOLVERS.register("ddim")
class DDIM(DiffusionSampler):
    """DDIM with stochasticity ``eta`` (0: deterministic, 1: the DDPM posterior).

    ``x_s = alpha_s x0 + sqrt(sigma_s^2 - c^2) eps + c z`` with
    ``c = eta sigma_s sqrt(1 - exp(2 (lambda_t - lambda_s)))`` (Song et al. 2021a, eq. 12, 16).

    ``DDIM(eta)`` is the registered family name: it builds a
    :class:`DeterministicDDIM` for ``eta == 0`` and a :class:`StochasticDDIM`
    otherwise, so that ``is_stochastic`` is a true class-level declaration of
    every instance. Configs keep the name ``ddim``.

    Args:
        eta: Noise scale in ``[0, 1]``.

    Raises:
        ConfigError: ``eta`` outside ``[0, 1]``, or not matching the leaf built directly.
    """

    order = 1
    is_stochastic = True  # the family: some members draw noise; each leaf declares its own value
    default_grid = "uniform"

    def __new__(cls, eta: float = 0.0, **unknown: Any) -> DDIM:  # unknown keys: refused by the constructor's check
        if cls is DDIM:
            cls = DeterministicDDIM if eta == 0 else StochasticDDIM
        return super().__new__(cls)

    def __init__(self, eta: float = 0.0) -> None:
        if not 0.0 <= eta <= 1.0:
            raise ConfigError(f"DDIM eta must be in [0, 1]; got {eta}")
        if (eta > 0) != self.is_stochastic:
            raise ConfigError(f"{type(self).__name__} needs eta {'> 0' if self.is_stochastic else '= 0'}; got {eta}")
        self.eta = float(eta)

    def _step(self, x, x0, eps, k, run):
        a_s, s_s = run.schedule.alpha[k + 1], run.schedule.sigma[k + 1]
        if not self.is_stochastic:
            return a_s * x0 + s_s * eps
        ratio = math.exp(2.0 * (run.schedule.log_snr[k] - run.schedule.log_snr[k + 1]))
        c = self.eta * s_s * max(1.0 - ratio, 0.0) ** 0.5
        z = run.noise(x, "DDIM(eta > 0).solve")
        return a_s * x0 + max(s_s * s_s - c * c, 0.0) ** 0.5 * eps + c * z


class DeterministicDDIM(DDIM):
    """DDIM with ``eta = 0``: the first-order exponential integrator of the probability-flow ODE."""

    is_stochastic = False


class StochasticDDIM(DDIM):
    """DDIM with ``eta > 0``: draws fresh noise every step."""

    is_stochastic = True
