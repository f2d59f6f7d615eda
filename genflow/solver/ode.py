"""ODE solvers backed by torchdiffeq (wrapped, not rewritten).

:class:`TorchdiffeqSolver` is the public, abstract base of the family: it
integrates the probability-flow velocity (:meth:`TorchdiffeqSolver.field_from`)
with ``torchdiffeq.odeint``, and a leaf declares one thing, the torchdiffeq
``method`` name (plus its numerics). :class:`FixedStepODESolver` steps over the
given grid ``ts`` (or over an explicit ``step_size``; there is no silent default
step); :class:`AdaptiveODESolver` takes ``rtol``/``atol`` and returns the
solution at ``ts``. An adaptive solve refuses a relative tolerance its dtype
cannot resolve, stops with :class:`~genflow.errors.StepLimitError` after
``max_steps`` step attempts, and can show a progress bar. Its last step is
forced to land on ``ts[-1]`` (torchdiffeq's ``step_t``) and every time passed to
the field is clamped into the grid's range, because torchdiffeq's initial
step-size probe can overshoot; fixed-step methods only evaluate between grid
points and pass their times through untouched.

Reference: Chen et al. 2018, "Neural Ordinary Differential Equations" (torchdiffeq).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torchdiffeq import odeint, odeint_adjoint

from genflow.errors import ComponentError, ConfigError, NonFiniteError, StepLimitError, ToleranceError
from genflow.solver.base import SOLVERS, Solver, raise_if_nonfinite

__all__ = [
    "TorchdiffeqSolver",
    "FixedStepODESolver",
    "AdaptiveODESolver",
    "Euler",
    "Midpoint",
    "Heun",
    "RK4",
    "Dopri5",
    "Bosh3",
    "AdaptiveHeun",
    "Dopri8",
]

TOLERANCE_EPS_FACTOR = 10.0
"""An adaptive solve needs ``rtol >= TOLERANCE_EPS_FACTOR * eps(dtype)``: below it, round-off alone fails the test."""


class _OdeintFunc:
    """Adapts ``field(x, t)`` to torchdiffeq's ``func(t, y)``: counts calls, remembers the last times.

    A plain object, not an ``nn.Module`` (a module's ``__call__`` and ``__setattr__``
    cost microseconds per field call). ``clamp`` bounds ``t`` to the grid's range
    (adaptive solvers); ``limit`` stops a runaway solve; ``progress`` is a tqdm bar
    over the fraction of the time span covered.
    """

    __slots__ = ("field", "calls", "recent_t", "clamp", "limit", "progress", "t0", "span")

    def __init__(self, field: Callable[[Tensor, Tensor], Tensor], ts: Tensor, *, clamp: bool) -> None:
        self.field = field
        self.calls = 0
        self.recent_t: tuple[Tensor | None, Tensor | None] = (None, None)  # (previous, last) call times
        self.clamp = (float(ts.min()), float(ts.max())) if clamp else None
        self.limit: int | None = None
        self.progress: Any = None
        self.t0 = self.span = 0.0

    def __call__(self, t: Tensor, y: Tensor) -> Tensor:
        self.calls += 1
        self.recent_t = (self.recent_t[1], t)
        if self.limit is not None and self.calls > self.limit:
            raise StepLimitError(
                f"the adaptive solve made {self.calls - 1} field calls without reaching the end of the grid; "
                f"stopped at t={float(t):.6g}: loosen rtol/atol, or raise max_steps",
                time=float(t),
            )
        if self.progress is not None:
            self.progress.n = round(1000 * min(1.0, abs(float(t) - self.t0) / self.span), 1)
            self.progress.refresh()
        if self.clamp is not None:
            t = t.clamp(*self.clamp)
        return self.field(y, t)


class TorchdiffeqSolver(Solver):
    """Abstract base of the torchdiffeq-backed ODE solvers.

    Integrates ``field(x, t) -> dx/dt``; in a :class:`~genflow.sampling.Sampler`
    that is the model's probability-flow velocity. A leaf declares the
    torchdiffeq method name as the class attribute ``method`` (the one abstract
    hook) and its numerics (``order``, ``nfe_per_step``); the two intermediate
    bases supply the constructor and the options (:meth:`odeint_options`).

    ``solve(..., adjoint_params=...)`` names the parameters the adjoint method
    differentiates when the field is not an ``nn.Module``.
    """

    kind = "ode"
    solve_options = ("adjoint_params",)
    adjoint: bool

    @property
    @abstractmethod
    def method(self) -> str:
        """The ``method`` name passed to ``torchdiffeq.odeint`` (a leaf sets it as a class attribute)."""

    def field_from(self, denoiser: Any) -> Callable[[Tensor, Tensor], Tensor]:
        """The probability-flow ODE's velocity ``dx/dt`` of the model."""
        return denoiser.velocity

    def odeint_options(self, x: Tensor, ts: Tensor) -> dict[str, Any]:
        """Keyword arguments for ``odeint`` besides ``method`` (validated against ``x``'s dtype here)."""
        return {}

    def _prepare(self, func: _OdeintFunc, ts: Tensor) -> None:
        """Set the adapter's step limit and progress bar (adaptive solvers)."""

    def _solve(self, field, x, ts, *, generator, return_trajectory, adjoint_params=None):
        kwargs = self.odeint_options(x, ts)
        func = _OdeintFunc(field, ts, clamp=self.adaptive)
        self._prepare(func, ts)
        try:
            if self.adjoint:
                params = tuple(adjoint_params) if adjoint_params is not None else self._field_parameters(field)
                ys = odeint_adjoint(func, x, ts, method=self.method, adjoint_params=params, **kwargs)
            else:
                ys = odeint(func, x, ts, method=self.method, **kwargs)
        except AssertionError as err:  # torchdiffeq asserts on dt underflow, typically from NaN
            finite = [float(t) for t in func.recent_t if t is not None and bool(torch.isfinite(t))]
            t_bad = finite[-1] if finite else float("nan")
            raise NonFiniteError(
                f"{type(self).__name__} failed near t={t_bad:.6g} ({err}); the field probably returned NaN or Inf",
                time=t_bad,
            ) from err
        finally:
            func.limit = None  # an adjoint backward pass later calls the field again
            if func.progress is not None:
                func.progress.close()
        raise_if_nonfinite(ys, ts)
        return ys[-1], ys, func.calls

    def _field_parameters(self, field: Any) -> tuple[Tensor, ...]:
        if isinstance(field, nn.Module):
            return tuple(field.parameters())
        if torch.is_grad_enabled():
            raise ComponentError(
                f"{type(self).__name__}(adjoint=True) finds parameters only on an nn.Module field; got "
                f"{type(field).__name__}: pass solve(..., adjoint_params=model.parameters()) or a Module"
            )
        return ()


class FixedStepODESolver(TorchdiffeqSolver):
    """Abstract fixed-step method: steps over ``ts``, or over ``step_size`` if given.

    Args:
        step_size: Sub-step size (``None``: one step per grid interval).
        adjoint: Differentiate with the adjoint method (constant memory).
    """

    def __init__(self, step_size: float | None = None, adjoint: bool = False) -> None:
        if step_size is not None and not step_size > 0:
            raise ConfigError(f"step_size must be a positive float or None (step over ts); got {step_size}")
        self.step_size = step_size
        self.adjoint = bool(adjoint)

    def odeint_options(self, x, ts):
        return {"options": {"step_size": self.step_size}} if self.step_size is not None else {}


class AdaptiveODESolver(TorchdiffeqSolver):
    """Abstract embedded Runge-Kutta pair with error control.

    Args:
        rtol / atol: Relative and absolute tolerances (``rtol`` must be at least
            ten times the state dtype's machine epsilon; checked at solve time).
        adjoint: Differentiate with the adjoint method (constant memory).
        max_steps: Most step attempts (accepted and rejected) before
            :class:`~genflow.errors.StepLimitError`.
        progress: Show a tqdm bar of the time span covered (for long solves).
    """

    adaptive = True

    def __init__(
        self,
        rtol: float = 1e-5,
        atol: float = 1e-5,
        adjoint: bool = False,
        max_steps: int = 10_000,
        progress: bool = False,
    ) -> None:
        if not (rtol > 0 and atol > 0):
            raise ConfigError(f"rtol and atol must be > 0; got rtol={rtol}, atol={atol}")
        if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
            raise ConfigError(f"max_steps must be a positive int; got {max_steps!r}")
        self.rtol, self.atol = float(rtol), float(atol)
        self.adjoint = bool(adjoint)
        self.max_steps = max_steps
        self.progress = bool(progress)

    def odeint_options(self, x, ts):
        eps = torch.finfo(x.dtype).eps
        if self.rtol < TOLERANCE_EPS_FACTOR * eps:
            raise ToleranceError(
                f"{type(self).__name__} rtol={self.rtol:g} is below what {x.dtype} resolves (machine eps {eps:.3g}; "
                f"need rtol >= {TOLERANCE_EPS_FACTOR * eps:.3g}): loosen rtol or solve in torch.float64"
            )
        return {"rtol": self.rtol, "atol": self.atol, "options": {"step_t": ts[-1:]}}

    def _prepare(self, func, ts):
        func.limit = self.max_steps * self.nfe_per_step + 2  # + torchdiffeq's two calls choosing the first step
        if self.progress:
            from tqdm.auto import tqdm

            func.t0, func.span = float(ts[0]), abs(float(ts[-1] - ts[0]))
            func.progress = tqdm(total=1000, desc=f"{type(self).__name__} (per mille of the span)", leave=False)


@SOLVERS.register("euler")
class Euler(FixedStepODESolver):
    """Forward Euler, order 1."""

    method = "euler"
    order = 1
    nfe_per_step = 1


@SOLVERS.register("midpoint")
class Midpoint(FixedStepODESolver):
    """Explicit midpoint rule, order 2."""

    method = "midpoint"
    order = 2
    nfe_per_step = 2


@SOLVERS.register("heun")
class Heun(FixedStepODESolver):
    """Heun's method (explicit trapezoid), order 2."""

    method = "heun2"
    order = 2
    nfe_per_step = 2


@SOLVERS.register("rk4")
class RK4(FixedStepODESolver):
    """Classical fourth-order Runge-Kutta (3/8 rule variant), order 4."""

    method = "rk4"
    order = 4
    nfe_per_step = 4


@SOLVERS.register("dopri5")
class Dopri5(AdaptiveODESolver):
    """Dormand-Prince 5(4), adaptive, order 5."""

    method = "dopri5"
    order = 5
    nfe_per_step = 6


@SOLVERS.register("bosh3")
class Bosh3(AdaptiveODESolver):
    """Bogacki-Shampine 3(2), adaptive, order 3."""

    method = "bosh3"
    order = 3
    nfe_per_step = 3


@SOLVERS.register("adaptive_heun")
class AdaptiveHeun(AdaptiveODESolver):
    """Heun-Euler 2(1), adaptive, order 2."""

    method = "adaptive_heun"
    order = 2
    nfe_per_step = 2


@SOLVERS.register("dopri8")
class Dopri8(AdaptiveODESolver):
    """Dormand-Prince 8(7), adaptive, order 8."""

    method = "dopri8"
    order = 8
    nfe_per_step = 12
