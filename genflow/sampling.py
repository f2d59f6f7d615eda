"""The :class:`Sampler`: the single entry for generation.

It composes a Gaussian :class:`~genflow.process.gaussian.GaussianProcess`, a
:class:`~genflow.model.base.ScoreModel` and a :class:`~genflow.solver.base.Solver`,
wraps the model in a :class:`ModelDenoiser` and lets the solver pick what it
integrates (:meth:`~genflow.solver.base.Solver.field_from`): the probability-flow
velocity for an ODE solver, the reverse-time SDE for an SDE solver, the
``(x0, eps)`` prediction for a native diffusion sampler, or anything a new
solver family asks the denoiser for. Every model call is counted, and so are
the FLOPs the run spends (:attr:`SampleOutput.flops`). With ``exit_policy`` the
model runs the policy's number of blocks at each time (early exit, see
:mod:`genflow.exit`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint as activation_checkpoint

from genflow.errors import ComponentError, DTypeError, NonFiniteError, ShapeError
from genflow.exit.base import ExitPolicy
from genflow.exit.model import EarlyExitModel
from genflow.model.base import ScoreModel
from genflow.model.flops import TotalFlopCounter
from genflow.process.gaussian import GaussianProcess, ReverseSDE, check_parameterization
from genflow.random import require_generator
from genflow.solver.base import Solver, synchronize
from genflow.solver.grids import TIME_GRIDS, TimeGrid
from genflow.validation import check_device, check_float_dtype, check_instance, check_state, check_steps

__all__ = ["Sampler", "SampleOutput", "ModelDenoiser"]


class ModelDenoiser:
    """A model on a process, seen as every field a solver integrates.

    Counts model calls in ``calls``. Times are clamped into ``[0, 1]`` so
    round-off at a grid end never reaches the process outside its domain.
    With ``checkpoint=True`` each model call runs under
    ``torch.utils.checkpoint`` when gradients are being recorded: its
    activations are recomputed in the backward pass instead of stored.
    With ``measure_flops=True`` the first call runs under a ``TotalFlopCounter``
    and ``first_call_flops`` holds ``(its FLOPs, its batch size)``.
    """

    def __init__(
        self,
        process: GaussianProcess,
        model: ScoreModel,
        cond: Any = None,
        *,
        checkpoint: bool = False,
        measure_flops: bool = False,
    ) -> None:
        self.process = process
        self.model = model
        self.cond = cond
        self.checkpoint = bool(checkpoint)
        self.calls = 0
        self.measure_flops = bool(measure_flops)
        self.first_call_flops: tuple[int, int] | None = None

    @staticmethod
    def _times(x: Tensor, t: Tensor) -> Tensor:
        """``t`` (scalar or ``(batch,)``) as ``(batch,)`` on ``x``'s device and dtype, clamped into ``[0, 1]``."""
        return torch.as_tensor(t, dtype=x.dtype, device=x.device).clamp(0.0, 1.0).expand(x.shape[0])

    def prediction(self, x: Tensor, t: Tensor) -> Tensor:
        """The model's raw output at ``(x, t)`` (one counted call); ``t`` as given by :meth:`_times`."""
        self.calls += 1
        if self.measure_flops and self.calls == 1:
            with TotalFlopCounter() as counter:
                out = self._call(x, t)
            self.first_call_flops = (counter.total, x.shape[0])
        else:
            out = self._call(x, t)
        if out.shape != x.shape:
            raise ShapeError(
                f"{type(self.model).__name__} returned shape {tuple(out.shape)}; expected {tuple(x.shape)}"
            )
        return out

    def _call(self, x: Tensor, t: Tensor) -> Tensor:
        if self.checkpoint and torch.is_grad_enabled():
            return activation_checkpoint(self._model_call, x, t, use_reentrant=False)
        return self._model_call(x, t)

    def _model_call(self, x: Tensor, t: Tensor) -> Tensor:
        return self.model(x, t, cond=self.cond) if self.cond is not None else self.model(x, t)

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
        flops: FLOPs of every model call of the run, all samples (forward passes as
            ``torch.utils.flop_counter`` counts them; exited blocks cost nothing);
            ``None`` for an :class:`~genflow.exit.EarlyExitModel` built with ``count_flops=False``.
    """

    samples: Tensor
    nfe: int
    model_calls: int
    seconds: float
    ts: Tensor
    trajectory: Tensor | None = None
    flops: int | None = None


class Sampler:
    """Composes process, model and solver (dependency injection).

    Args:
        process: The Gaussian process the model was trained on.
        model: A :class:`ScoreModel` instance declaring its ``parameterization``.
        solver: A :class:`Solver` instance; it says what it integrates through
            :meth:`~genflow.solver.base.Solver.field_from`.
        grid: A :class:`TimeGrid` or its registered name; default: the solver's
            declared ``default_grid``, else the process's.
        t_start: First time (noise side); default ``process.t_max``.
        t_end: Last time (data side); default ``process.t_min``.
        denoise_final: Return the model's ``x0`` prediction at ``t_end`` (one more call).
        exit_policy: Early exit: an :class:`~genflow.exit.ExitPolicy` (or its name or
            config) giving the blocks to run at each time; the model is wrapped in an
            :class:`~genflow.exit.EarlyExitModel` (kept as :attr:`model`). Needs a
            backbone declaring ``num_blocks`` (DiT, UViT).

    Raises:
        ComponentError: a class instead of an instance, incompatible components, an
            ``exit_policy`` for a backbone without ``num_blocks`` or for a model already
            wrapped in an ``EarlyExitModel``.
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
        exit_policy: ExitPolicy | dict | str | None = None,
    ) -> None:
        self.process = check_instance(process, GaussianProcess, "process")
        self.model = check_instance(model, ScoreModel, "model")
        if exit_policy is not None:
            if isinstance(model, EarlyExitModel):
                raise ComponentError(
                    "exit_policy was given for a model already wrapped in an EarlyExitModel: pass the backbone, "
                    "or the wrapper without exit_policy"
                )
            self.model = EarlyExitModel(model, exit_policy)
        self.solver = check_instance(solver, Solver, "solver")
        parameterization = getattr(model, "parameterization", None)
        if parameterization is None:
            raise ComponentError(f"model {type(model).__name__} must declare a parameterization")
        check_parameterization(parameterization)
        grid = grid or solver.default_grid or process.default_grid
        self.grid = TIME_GRIDS.create(grid) if isinstance(grid, str) else check_instance(grid, TimeGrid, "grid")
        self.t_start, self.t_end = t_start, t_end
        self.denoise_final = bool(denoise_final)
        self._sample_flops: dict[tuple, tuple[int, int]] = {}  # (FLOPs, batch) of a measured model call

    def time_grid(self, steps: int, *, dtype: torch.dtype = torch.float64, device: Any = None) -> Tensor:
        """The decreasing grid of ``steps + 1`` times this sampler uses."""
        check_steps(steps)
        return self.grid(self.process, steps, t_start=self.t_start, t_end=self.t_end, dtype=dtype, device=device)

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
        grad: bool = False,
        checkpoint: bool = False,
    ) -> SampleOutput:
        """Draw ``shape[0]`` samples of event shape ``shape[1:]``.

        Args:
            shape: ``(n, *event_shape)``.
            steps: Grid steps, an int in ``[1, 100000]`` (for adaptive ODE solvers, output times only).
            generator: Randomness for the prior and stochastic solvers (required).
            batch_size: Generate in chunks of this size (bounded peak memory).
            cond: Conditioning passed to the model: a tensor or a list/tuple
                with one entry per sample.
            return_trajectory: Also return states at every grid time.
            dtype / device: Of the samples; default float32 (torch default) and
                the model's device.
            x_init: Start states at the first grid time, shape ``shape`` (e.g. noised
                data for SDEdit); default draws from ``process.prior`` at that time.
            grad: Keep the autograd graph through the whole sampling chain
                (gradients reach ``x_init``, ``cond`` and the model's parameters);
                default off (``torch.no_grad``).
            checkpoint: With ``grad``, recompute each model call's activations in
                the backward pass instead of storing them (``torch.utils.checkpoint``):
                memory per step drops to the states, at the cost of one more forward.

        Raises:
            ShapeError: bad ``shape``, ``batch_size``, ``x_init`` or ``cond`` length.
            TimeGridError: ``steps`` not an int in ``[1, 100000]``.
            DTypeError: ``dtype`` not floating point, ``cond`` not a tensor/list/tuple,
                ``x_init`` not a floating tensor.
            ConfigError: a device that is not one, or ``meta``.
            ComponentError: ``device`` differs from the model's parameters' device.
            GeneratorRequiredError: no ``generator``.
            NonFiniteError: NaN or Inf in the states or the final ``x0`` prediction.
        """
        require_generator(generator, "Sampler.sample")
        shape = tuple(int(s) for s in shape)
        if len(shape) < 1 or shape[0] < 1:
            raise ShapeError(f"shape must be (n, *event_shape) with n >= 1; got {shape}")
        check_steps(steps)
        n = shape[0]
        if x_init is not None and tuple(check_state(x_init, "x_init").shape) != shape:
            raise ShapeError(f"x_init must have the sample shape {shape}; got {tuple(x_init.shape)}")
        if cond is not None:
            if not isinstance(cond, (Tensor, list, tuple)):
                raise DTypeError(f"cond must be a torch.Tensor or a list/tuple with one entry per sample; got "
                                 f"{type(cond).__name__}")  # fmt: skip
            if len(cond) != n:
                raise ShapeError(f"cond must have one entry per sample ({n}); got {len(cond)}")
        if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
            raise ShapeError(f"batch_size must be a positive int or None; got {batch_size!r}")
        chunk = batch_size or n
        device = self._device(device)
        dtype = check_float_dtype(dtype or torch.get_default_dtype())
        ts = self.time_grid(steps, dtype=dtype, device=device)
        flops, measure = self._flop_meter(shape, dtype, device)
        start = time.perf_counter()
        samples, trajectories, nfe, calls, sample_calls, probe = [], [], 0, 0, 0, None
        with torch.set_grad_enabled(bool(grad)):
            for lo in range(0, n, chunk):
                b = min(chunk, n - lo)
                part = None if cond is None else cond[lo : lo + b]
                denoiser = ModelDenoiser(
                    self.process, self.model, part, checkpoint=checkpoint, measure_flops=measure and lo == 0
                )
                if x_init is None:
                    x = self.process.prior((b, *shape[1:]), generator, t=float(ts[0]), dtype=dtype, device=device)
                else:
                    x = x_init[lo : lo + b].to(device=device, dtype=dtype)
                sol = self.solver.solve(
                    self.solver.field_from(denoiser), x, ts, generator=generator, return_trajectory=return_trajectory
                )
                x = sol.x
                if self.denoise_final:
                    x = self._denoised(denoiser, x, ts[-1])
                samples.append(x)
                if return_trajectory:
                    trajectories.append(sol.trajectory)
                nfe, calls = max(nfe, denoiser.calls), calls + denoiser.calls
                sample_calls += b * denoiser.calls
                probe = probe or denoiser.first_call_flops
        out = torch.cat(samples)
        synchronize(out)
        seconds = time.perf_counter() - start
        return SampleOutput(
            samples=out,
            nfe=nfe,
            model_calls=calls,
            seconds=seconds,
            ts=ts,
            trajectory=torch.cat(trajectories, dim=1) if return_trajectory else None,
            flops=flops(sample_calls, probe),
        )

    def _flop_meter(self, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> tuple[Any, bool]:
        """``(flops(sample_calls, probe), measure)``: the run's FLOPs from its sample-calls (calls times batch).

        An :class:`EarlyExitModel` counts its own calls at their depths (the growth of its
        counter over the run). Any other model costs the same per sample at every call:
        the first call of a run with a new event shape, dtype or device is measured by
        ``torch.utils.flop_counter``'s rules (``measure`` is then true; the ``ModelDenoiser``
        returns ``(flops, batch)`` as ``probe``) and the cost per sample is cached.
        """
        if isinstance(self.model, EarlyExitModel):
            before = self.model.flops_spent
            return (lambda sample_calls, probe: None if before is None else self.model.flops_spent - before), False
        key = (shape[1:], dtype, device)

        def flops(sample_calls: int, probe: tuple[int, int] | None) -> int | None:
            if probe is not None:
                self._sample_flops[key] = probe
            if key not in self._sample_flops:
                return None  # no model call was made
            call_flops, batch = self._sample_flops[key]
            return call_flops * sample_calls // batch  # FLOPs are linear in the batch

        return flops, key not in self._sample_flops

    def _device(self, device: Any) -> torch.device:
        """The sampling device: ``device`` if given (it must hold the model), else the model's."""
        param = next(iter(self.model.parameters()), None)
        if device is None:
            return param.device if param is not None else torch.device("cpu")
        device = check_device(device)
        if param is not None and (
            param.device.type != device.type or (device.index is not None and param.device.index != device.index)
        ):
            raise ComponentError(
                f"the model's parameters are on {param.device} but device={str(device)!r} was asked: "
                f"move the model first (model.to({str(device)!r})) or leave device=None"
            )
        return device

    @staticmethod
    def _denoised(denoiser: ModelDenoiser, x: Tensor, t_end: Tensor) -> Tensor:
        """The model's ``x0`` prediction at the last grid time, checked for NaN and Inf."""
        x0 = denoiser.predict(x, t_end)[0]
        if not bool(torch.isfinite(x0).all()):
            t = float(t_end)
            raise NonFiniteError(
                f"the final x0 prediction (denoise_final=True) at t={t:.6g} contains NaN or Inf; the model's "
                f"{denoiser.model.parameterization!r} output may be singular there (try t_end > 0)",
                time=t,
            )
        return x0
