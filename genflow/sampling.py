"""The :class:`Sampler`: the single entry for generation.

It composes a Gaussian :class:`~genflow.process.gaussian.GaussianProcess`, a
:class:`~genflow.model.base.ScoreModel` and a :class:`~genflow.solver.base.Solver`
and picks what the solver integrates from the solver's declared ``kind``: the
probability-flow ODE for an ODE solver, the reverse-time SDE for an SDE solver,
the model's ``(x0, eps)`` prediction for a native diffusion sampler. Every
model call is counted.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from genflow.errors import ComponentError, ShapeError
from genflow.model.base import ScoreModel
from genflow.process.gaussian import GaussianProcess, ReverseSDE, check_parameterization
from genflow.random import require_generator
from genflow.solver.base import Solver, synchronize
from genflow.solver.grids import TIME_GRIDS, TimeGrid
from genflow.validation import check_instance

__all__ = ["Sampler", "SampleOutput", "ModelDenoiser"]


class ModelDenoiser:
    """A model on a process, seen as every field a solver integrates.

    Counts model calls in ``calls``. Times are clamped into ``[0, 1]`` so
    round-off at a grid end never reaches the process outside its domain.
    """

    def __init__(self, process: GaussianProcess, model: ScoreModel, cond: Any = None) -> None:
        self.process = process
        self.model = model
        self.cond = cond
        self.calls = 0

    @staticmethod
    def _times(x: Tensor, t: Tensor) -> Tensor:
        """``t`` (scalar or ``(batch,)``) as ``(batch,)`` on ``x``'s device and dtype, clamped into ``[0, 1]``."""
        return torch.as_tensor(t, dtype=x.dtype, device=x.device).clamp(0.0, 1.0).expand(x.shape[0])

    def prediction(self, x: Tensor, t: Tensor) -> Tensor:
        """The model's raw output at ``(x, t)`` (one counted call); ``t`` as given by :meth:`_times`."""
        self.calls += 1
        out = self.model(x, t, cond=self.cond) if self.cond is not None else self.model(x, t)
        if out.shape != x.shape:
            raise ShapeError(
                f"{type(self.model).__name__} returned shape {tuple(out.shape)}; expected {tuple(x.shape)}"
            )
        return out

    def _convert(self, x: Tensor, t: Tensor, target: str) -> Tensor:
        t = self._times(x, t)
        return self.process.convert(self.prediction(x, t), self.model.parameterization, target, x, t)

    def predict(self, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """``(x0_hat, eps_hat)`` for native diffusion samplers."""
        t = self._times(x, t)
        return self.process.to_x0_eps(self.prediction(x, t), self.model.parameterization, x, t)

    def score(self, x: Tensor, t: Tensor) -> Tensor:
        """``grad log p_t(x)`` as estimated by the model."""
        return self._convert(x, t, "score")

    def velocity(self, x: Tensor, t: Tensor) -> Tensor:
        """Probability-flow ODE velocity ``dx/dt`` (equals the ``velocity`` parameterisation)."""
        return self._convert(x, t, "velocity")

    def reverse_sde(self) -> ReverseSDE:
        """Reverse-time SDE driven by the model's score."""
        return self.process.reverse_sde(self.score)


@dataclass
class SampleOutput:
    """Samples and what they cost.

    Attributes:
        samples: ``(n, *event_shape)``.
        nfe: Model calls along one sample path (the largest over chunks).
        model_calls: Model calls in total, over all chunks.
        seconds: Wall-clock time (device synchronised).
        ts: The time grid used.
        trajectory: States at ``ts``, ``(len(ts), n, *event_shape)``, if requested.
    """

    samples: Tensor
    nfe: int
    model_calls: int
    seconds: float
    ts: Tensor
    trajectory: Tensor | None = None


class Sampler:
    """Composes process, model and solver (dependency injection).

    Args:
        process: The Gaussian process the model was trained on.
        model: A :class:`ScoreModel` instance declaring its ``parameterization``.
        solver: A :class:`Solver` instance of kind ``ode``, ``sde`` or ``diffusion``.
        grid: A :class:`TimeGrid` or its registered name; default: the process's.
        t_start: First time (noise side); default ``process.t_max``.
        t_end: Last time (data side); default ``process.t_min``.
        denoise_final: Return the model's ``x0`` prediction at ``t_end`` (one more call).

    Raises:
        ComponentError: a class instead of an instance, or incompatible components.
    """

    def __init__(
        self,
        process: GaussianProcess,
        model: ScoreModel,
        solver: Solver,
        *,
        grid: TimeGrid | str | None = None,
        t_start: float | None = None,
        t_end: float | None = None,
        denoise_final: bool = False,
    ) -> None:
        self.process = check_instance(process, GaussianProcess, "process")
        self.model = check_instance(model, ScoreModel, "model")
        self.solver = check_instance(solver, Solver, "solver")
        parameterization = getattr(model, "parameterization", None)
        if parameterization is None:
            raise ComponentError(f"model {type(model).__name__} must declare a parameterization")
        check_parameterization(parameterization)
        kind = getattr(solver, "kind", None)
        if kind not in ("ode", "sde", "diffusion"):
            raise ComponentError(
                f"solver kind must be ode, sde or diffusion; {type(solver).__name__} declares {kind!r}"
            )
        grid = grid if grid is not None else process.default_grid
        self.grid = TIME_GRIDS.create(grid) if isinstance(grid, str) else check_instance(grid, TimeGrid, "grid")
        self.t_start, self.t_end = t_start, t_end
        self.denoise_final = bool(denoise_final)

    def time_grid(self, steps: int, *, dtype: torch.dtype = torch.float64, device: Any = None) -> Tensor:
        """The decreasing grid of ``steps + 1`` times this sampler uses."""
        return self.grid(self.process, steps, t_start=self.t_start, t_end=self.t_end, dtype=dtype, device=device)

    def _field(self, denoiser: ModelDenoiser) -> Any:
        if self.solver.kind == "ode":
            return denoiser.velocity
        if self.solver.kind == "sde":
            return denoiser.reverse_sde()
        return denoiser

    @torch.no_grad()
    def sample(
        self,
        shape: tuple[int, ...],
        steps: int,
        *,
        generator: torch.Generator | None = None,
        batch_size: int | None = None,
        cond: Any = None,
        return_trajectory: bool = False,
        dtype: torch.dtype | None = None,
        device: Any = None,
        x_init: Tensor | None = None,
    ) -> SampleOutput:
        """Draw ``shape[0]`` samples of event shape ``shape[1:]``.

        Args:
            shape: ``(n, *event_shape)``.
            steps: Grid steps (for adaptive ODE solvers, output times only).
            generator: Randomness for the prior and stochastic solvers (required).
            batch_size: Generate in chunks of this size (bounded peak memory).
            cond: Conditioning passed to the model, first dimension ``n``.
            return_trajectory: Also return states at every grid time.
            dtype / device: Of the samples; default float32 (torch default) and
                the model's device.
            x_init: Start states at the first grid time, shape ``shape`` (e.g. noised
                data for SDEdit); default draws from ``process.prior`` at that time.

        Raises:
            ShapeError: bad ``shape`` or ``batch_size``.
            GeneratorRequiredError: no ``generator``.
        """
        require_generator(generator, "Sampler.sample")
        shape = tuple(int(s) for s in shape)
        if len(shape) < 1 or shape[0] < 1:
            raise ShapeError(f"shape must be (n, *event_shape) with n >= 1; got {shape}")
        n = shape[0]
        if x_init is not None and tuple(x_init.shape) != shape:
            raise ShapeError(f"x_init must have the sample shape {shape}; got {tuple(x_init.shape)}")
        if cond is not None and len(cond) != n:
            raise ShapeError(f"cond must have one entry per sample ({n}); got {len(cond)}")
        if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
            raise ShapeError(f"batch_size must be a positive int or None; got {batch_size!r}")
        chunk = batch_size or n
        if device is None:
            param = next(iter(self.model.parameters()), None)
            device = param.device if param is not None else torch.device("cpu")
        dtype = dtype or torch.get_default_dtype()
        ts = self.time_grid(steps, dtype=dtype, device=device)
        start = time.perf_counter()
        samples, trajectories, nfe, calls = [], [], 0, 0
        for lo in range(0, n, chunk):
            b = min(chunk, n - lo)
            denoiser = ModelDenoiser(self.process, self.model, None if cond is None else cond[lo : lo + b])
            if x_init is None:
                x = self.process.prior((b, *shape[1:]), generator, t=float(ts[0]), dtype=dtype, device=device)
            else:
                x = x_init[lo : lo + b].to(device=device, dtype=dtype)
            sol = self.solver.solve(
                self._field(denoiser), x, ts, generator=generator, return_trajectory=return_trajectory
            )
            x = sol.x
            if self.denoise_final:
                x = denoiser.predict(x, ts[-1])[0]
            samples.append(x)
            if return_trajectory:
                trajectories.append(sol.trajectory)
            nfe, calls = max(nfe, denoiser.calls), calls + denoiser.calls
        out = torch.cat(samples)
        synchronize(out)
        return SampleOutput(
            samples=out,
            nfe=nfe,
            model_calls=calls,
            seconds=time.perf_counter() - start,
            ts=ts,
            trajectory=torch.cat(trajectories, dim=1) if return_trajectory else None,
        )
