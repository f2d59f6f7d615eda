"""ODE solvers backed by torchdiffeq (wrapped, not rewritten).

Fixed-step methods step over the given grid ``ts`` (or over an explicit
``step_size``; there is no silent default step). Adaptive methods take
``rtol``/``atol`` and return the solution at ``ts``; their last step is forced
to land on ``ts[-1]`` (torchdiffeq's ``step_t``), and every time passed to the
field is clamped into the grid's range, so a field is never asked for ``t``
outside ``[0, 1]`` (torchdiffeq's initial step-size probe can overshoot).

Reference: Chen et al. 2018, "Neural Ordinary Differential Equations" (torchdiffeq).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torchdiffeq import odeint, odeint_adjoint

from genflow.errors import ComponentError, ConfigError, NonFiniteError
from genflow.solver.base import SOLVERS, Solver, raise_if_nonfinite

__all__ = ["Euler", "Midpoint", "Heun", "RK4", "Dopri5", "Bosh3", "AdaptiveHeun", "Dopri8"]


class _TorchdiffeqFunc(nn.Module):
    """Adapts ``field(x, t)`` to torchdiffeq's ``func(t, y)``; counts calls, clamps ``t``."""

    def __init__(self, field: Callable[[Tensor, Tensor], Tensor], t_lo: float, t_hi: float) -> None:
        super().__init__()
        self.field = field  # registered as a submodule when it is an nn.Module (adjoint finds its params)
        self.t_lo, self.t_hi = t_lo, t_hi
        self.calls = 0
        self.recent_t: tuple[Tensor | None, Tensor | None] = (None, None)  # (previous, last) call times

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        self.calls += 1
        self.recent_t = (self.recent_t[1], t)
        return self.field(y, t.clamp(self.t_lo, self.t_hi))


class _TorchdiffeqSolver(Solver):
    """Shared driver of the torchdiffeq-backed solvers (abstract)."""

    kind = "ode"
    method: ClassVar[str]
    solve_options = ("adjoint_params",)

    @abstractmethod
    def _torchdiffeq_options(self, ts: Tensor) -> tuple[dict[str, Any], dict[str, Any]]:
        """``(keyword arguments, options dict)`` for ``odeint``."""

    def _solve(self, field, x, ts, *, generator, return_trajectory, adjoint_params=None):
        lo, hi = float(ts.min()), float(ts.max())
        func = _TorchdiffeqFunc(field, lo, hi)
        kwargs, options = self._torchdiffeq_options(ts)
        try:
            if self.adjoint:
                params = tuple(adjoint_params) if adjoint_params is not None else tuple(func.parameters())
                if not params and not isinstance(field, nn.Module) and torch.is_grad_enabled():
                    raise ComponentError(
                        f"{type(self).__name__}(adjoint=True) finds parameters only on an nn.Module field; got "
                        f"{type(field).__name__}: pass solve(..., adjoint_params=model.parameters()) or a Module"
                    )
                ys = odeint_adjoint(func, x, ts, method=self.method, options=options, adjoint_params=params, **kwargs)
            else:
                ys = odeint(func, x, ts, method=self.method, options=options, **kwargs)
        except AssertionError as err:  # torchdiffeq asserts on dt underflow, typically from NaN
            finite = [float(t) for t in func.recent_t if t is not None and bool(torch.isfinite(t))]
            t_bad = finite[-1] if finite else float("nan")
            raise NonFiniteError(
                f"{type(self).__name__} failed near t={t_bad:.6g} ({err}); the field probably returned NaN or Inf",
                time=t_bad,
            ) from err
        raise_if_nonfinite(ys, ts)
        return ys[-1], ys, func.calls


class _FixedStepODESolver(_TorchdiffeqSolver):
    """Fixed-step method: steps over ``ts``, or over ``step_size`` if given."""

    def __init__(self, step_size: float | None = None, adjoint: bool = False) -> None:
        if step_size is not None and not step_size > 0:
            raise ConfigError(f"step_size must be a positive float or None (step over ts); got {step_size}")
        self.step_size = step_size
        self.adjoint = bool(adjoint)

    def _torchdiffeq_options(self, ts):
        return {}, ({"step_size": self.step_size} if self.step_size is not None else {})


class _AdaptiveODESolver(_TorchdiffeqSolver):
    """Embedded Runge-Kutta pair with error control."""

    adaptive = True

    def __init__(self, rtol: float = 1e-5, atol: float = 1e-5, adjoint: bool = False) -> None:
        if not (rtol > 0 and atol > 0):
            raise ConfigError(f"rtol and atol must be > 0; got rtol={rtol}, atol={atol}")
        self.rtol, self.atol = float(rtol), float(atol)
        self.adjoint = bool(adjoint)

    def _torchdiffeq_options(self, ts):
        return {"rtol": self.rtol, "atol": self.atol}, {"step_t": ts[-1:]}


@SOLVERS.register("euler")
class Euler(_FixedStepODESolver):
    """Forward Euler, order 1."""

    method = "euler"
    order = 1
    nfe_per_step = 1


@SOLVERS.register("midpoint")
class Midpoint(_FixedStepODESolver):
    """Explicit midpoint rule, order 2."""

    method = "midpoint"
    order = 2
    nfe_per_step = 2


@SOLVERS.register("heun")
class Heun(_FixedStepODESolver):
    """Heun's method (explicit trapezoid), order 2."""

    method = "heun2"
    order = 2
    nfe_per_step = 2


@SOLVERS.register("rk4")
class RK4(_FixedStepODESolver):
    """Classical fourth-order Runge-Kutta (3/8 rule variant), order 4."""

    method = "rk4"
    order = 4
    nfe_per_step = 4


@SOLVERS.register("dopri5")
class Dopri5(_AdaptiveODESolver):
    """Dormand-Prince 5(4), adaptive, order 5."""

    method = "dopri5"
    order = 5
    nfe_per_step = 6


@SOLVERS.register("bosh3")
class Bosh3(_AdaptiveODESolver):
    """Bogacki-Shampine 3(2), adaptive, order 3."""

    method = "bosh3"
    order = 3
    nfe_per_step = 3


@SOLVERS.register("adaptive_heun")
class AdaptiveHeun(_AdaptiveODESolver):
    """Heun-Euler 2(1), adaptive, order 2."""

    method = "adaptive_heun"
    order = 2
    nfe_per_step = 2


@SOLVERS.register("dopri8")
class Dopri8(_AdaptiveODESolver):
    """Dormand-Prince 8(7), adaptive, order 8."""

    method = "dopri8"
    order = 8
    nfe_per_step = 12
