"""SDE solvers backed by torchsde, for states of any event shape.

torchsde needs increasing times and one step size. A sampler's grid is
decreasing and often non-uniform, so each grid interval ``[t_k, t_{k+1}]`` is
mapped to the unit interval ``[k, k+1]`` of a solver time ``s`` and solved in
one step of ``ds = 1``: with ``h_k = t_{k+1} - t_k``,
``dX = f(X, t(s)) h_k ds + g(X, t(s)) sqrt(|h_k|) dW_s``, which is the same SDE
in law, stepped exactly on the grid. Methods that evaluate only at the start of
a step (Euler-Maruyama, Milstein) take any grid in one torchsde call, the
interval being ``floor(s)``; methods that also evaluate at a step's end (SRK,
reversible Heun) would see the next interval's ``h`` there, so on a non-uniform
grid they are solved one interval per call (the reversible Heun then restarts
at each grid point). torchsde's shape check calls the drift and the diffusion
once per call; those calls are answered without the model. The default Brownian motion lives
in solver time (unit intervals: no deep recursion in ``BrownianInterval``) and
is seeded from the ``generator``. A user-supplied ``brownian`` (a torchsde
Brownian object over the grid's range in ``t``) is queried through the same
time change, so one path can be reused across step sizes.

Reference: Li et al. 2020, "Scalable Gradients for SDEs"; Kidger et al. 2021,
"Efficient and Accurate Gradients for Neural SDEs" (torchsde).
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, ClassVar

import torch
import torchsde
from torch import Tensor

from genflow.errors import ComponentError, ShapeError
from genflow.random import seed_from
from genflow.solver.base import SDE, SOLVERS, CountingField, Solver, raise_if_nonfinite

__all__ = ["TorchsdeSolver", "EulerMaruyama", "Milstein", "SRK", "ReversibleHeun"]


class _TimeChangedSDE:
    """Presents an Ito SDE on a grid to torchsde in solver time ``s`` (see module docstring)."""

    noise_type = "diagonal"

    def __init__(self, sde: Any, ts: Tensor, event_shape: torch.Size, sde_type: str) -> None:
        self.sde = sde
        self.sde_type = sde_type
        self.ts = ts
        self.steps = ts[1:] - ts[:-1]
        # one host copy up front, so the per-call time change is plain float arithmetic
        self.ts_list, self.steps_list = ts.tolist(), self.steps.tolist()
        self.ts_points = ts.unbind()  # 0-d tensors: t(s) = ts[k] + (s - k) h is one fused add
        self.time_range = (min(self.ts_list), max(self.ts_list))
        self.event_shape = event_shape
        self.flat = len(event_shape) == 1  # torchsde's (batch, d) state is the state itself: no reshapes
        self.last_time: tuple[Tensor | None, Any] = (None, None)  # (s, (t, h)): f and g share one time change
        self.segment: int | None = 0  # interval of a per-interval solve; None for one solve over the grid
        self.uniform = False  # set by the solver: one solve over a uniform grid needs no interval lookup
        self.drift = CountingField(sde.drift)
        self.additive = bool(getattr(sde, "additive_noise", False))
        self.probing = False  # set before each sdeint: its shape check's calls skip the model
        self.checked_noise_shape = False

    def sdeint(self, y0: Tensor, s_grid: Tensor, **kwargs: Any) -> Tensor:
        """``torchsde.sdeint`` on this SDE; its contract check (one f and one g call) costs no model call."""
        self.probing = True
        self.last_time = (None, None)
        return torchsde.sdeint(self, y0, s_grid, **kwargs)

    def time(self, s: Tensor) -> tuple[Tensor, float | Tensor]:
        """``(t(s), h)`` for solver time ``s``, without a host sync.

        In a per-interval solve the interval is ``segment``; in one solve over a
        non-uniform grid it is ``floor(s)``, which is exact for methods that only
        evaluate at the start of a step.
        """
        if s is self.last_time[0]:  # torchsde asks f and g (or g twice) at the same s object
            return self.last_time[1]
        if self.segment is not None or self.uniform:
            k = self.segment or 0
            h = self.steps_list[k]
            t = torch.add(self.ts_points[k], s if k == 0 else s - k, alpha=h)  # exact at s = k
        else:
            k = s.floor().long().clamp(0, self.steps.numel() - 1)
            h = self.steps[k]
            t = self.ts[k] + (s - k.to(s.dtype)) * h
        self.last_time = (s, (t, h))
        return t, h

    def _unflat(self, y: Tensor) -> Tensor:
        return y if self.flat else y.reshape(y.shape[0], *self.event_shape)

    def f(self, s: Tensor, y: Tensor) -> Tensor:
        if self.probing:
            return torch.zeros_like(y)
        t, h = self.time(s)
        x = self._unflat(y)
        out = self.drift(x, t) * h
        if self.sde_type == "stratonovich" and not self.additive:
            # Ito -> Stratonovich drift for diagonal noise: f - g dg/dx / 2, in solver time
            out = out - 0.5 * abs(h) * self._g_dg(x, t)
        return out if self.flat else out.reshape(y.shape)

    def g(self, s: Tensor, y: Tensor) -> Tensor:
        if self.probing:
            self.probing = False
            return torch.zeros_like(y)
        t, h = self.time(s)
        g = self.sde.diffusion(self._unflat(y), t)
        if not self.checked_noise_shape:
            if g.shape != self._unflat(y).shape:
                raise ShapeError(
                    f"diffusion(x, t) must return diagonal noise of x's shape {tuple(self._unflat(y).shape)}; "
                    f"got {tuple(g.shape)}"
                )
            self.checked_noise_shape = True
        g = g * abs(h) ** 0.5
        return g if self.flat else g.reshape(y.shape)

    def _g_dg(self, x: Tensor, t: Tensor) -> Tensor:
        keep_graph = torch.is_grad_enabled()  # read outside enable_grad: build a graph only if the caller wants one
        with torch.enable_grad():
            xg = x if x.requires_grad else x.detach().requires_grad_(True)
            g = self.sde.diffusion(xg, t)
            (dg,) = torch.autograd.grad(g, xg, grad_outputs=g, create_graph=keep_graph, allow_unused=True)
        return torch.zeros_like(x) if dg is None else dg


class _TimeChangedBrownian:
    """A torchsde Brownian object in ``t`` seen from solver time ``s``.

    Over one interval of solver time the increment is ``W_t(|dt|) / sqrt|h|``;
    a decreasing grid traverses the path backwards, which flips the space-time
    Levy area: ``U_rev = |dt| dW - U`` (``U = int (W_r - W_a) dr``).
    """

    def __init__(self, brownian: Any, sde: _TimeChangedSDE) -> None:
        self.brownian = brownian
        self.sde = sde
        self.shape = tuple(brownian.shape)
        self.levy_area_approximation = brownian.levy_area_approximation
        self.dtype = getattr(brownian, "dtype", None)
        self.device = getattr(brownian, "device", None)

    def __call__(self, sa: Any, sb: Any = None, return_U: bool = False, return_A: bool = False) -> Any:
        if return_A:
            raise ComponentError("the time-changed Brownian motion does not provide Levy area A")
        sa_t, sb_t = torch.as_tensor(sa), torch.as_tensor(sb)
        ta, h = self.sde.time(sa_t.to(self.sde.ts))
        tb, _ = self.sde.time(sb_t.to(self.sde.ts))
        t_lo, t_hi = self.sde.time_range
        lo = min(max(float(torch.minimum(ta, tb)), t_lo), t_hi)  # clamp round-off of the time change
        hi = min(max(float(torch.maximum(ta, tb)), t_lo), t_hi)
        h = float(h)
        scale = abs(h)
        if return_U:
            w, u = self.brownian(lo, hi, return_U=True)
            if h < 0:
                u = (hi - lo) * w - u
            return w / scale**0.5, u / scale**1.5
        return self.brownian(lo, hi) / scale**0.5


class TorchsdeSolver(Solver):
    """Abstract base of the torchsde-backed SDE solvers.

    Integrates an :class:`~genflow.solver.base.SDE` (in a
    :class:`~genflow.sampling.Sampler`, the model's reverse-time SDE) through
    the time change described in the module docstring. A leaf declares the
    torchsde method name as the class attribute ``method`` (the one abstract
    hook) and, at class level, its numerics: ``strong_order``, ``weak_order``,
    ``nfe_per_step``, and where they differ from the defaults ``sde_type``
    (``"ito"`` or ``"stratonovich"``), ``levy_area`` (the Brownian motion's
    Levy-area approximation the method needs) and ``evaluates_step_end``.

    ``solve(..., brownian=...)`` takes a torchsde Brownian object over the
    grid's range in ``t`` instead of drawing one from ``generator``.
    """

    kind = "sde"
    is_stochastic = True
    sde_type: ClassVar[str] = "ito"
    levy_area: ClassVar[str] = "none"
    evaluates_step_end: ClassVar[bool] = False
    """Whether the method evaluates the SDE at the end of a step (then a non-uniform grid is solved per interval)."""
    solve_options = ("brownian",)

    def __init__(self) -> None:
        pass

    @property
    @abstractmethod
    def method(self) -> str:
        """The ``method`` name passed to ``torchsde.sdeint`` (a leaf sets it as a class attribute)."""

    def field_from(self, denoiser: Any) -> SDE:
        """The reverse-time SDE driven by the model's score."""
        return denoiser.reverse_sde()

    def _solve(self, sde, x, ts, *, generator, return_trajectory, brownian=None):
        if not (callable(getattr(sde, "drift", None)) and callable(getattr(sde, "diffusion", None))):
            raise ComponentError(
                f"{type(self).__name__} integrates an SDE object with drift(x, t) and diffusion(x, t); "
                f"got {type(sde).__name__}"
            )
        batch, event_shape = x.shape[0], x.shape[1:]
        y0 = x.reshape(batch, -1)
        n = ts.numel() - 1
        adapter = _TimeChangedSDE(sde, ts, event_shape, self.sde_type)
        steps = adapter.steps
        # round-off of a uniform grid's steps is absolute, about eps * max|t| per point
        atol = 64 * torch.finfo(steps.dtype).eps * float(ts.abs().max())
        adapter.uniform = bool(torch.allclose(steps, steps[:1].expand_as(steps), rtol=0.0, atol=atol))
        single_call = adapter.uniform or not self.evaluates_step_end
        if brownian is not None:
            if tuple(brownian.shape) != tuple(y0.shape):
                raise ShapeError(
                    f"brownian must have shape (batch, prod(event_shape)) = {tuple(y0.shape)} (states are flattened "
                    f"for torchsde); got {tuple(brownian.shape)}"
                )
            bm = _TimeChangedBrownian(brownian, adapter)
        else:
            seed = seed_from(generator, f"{type(self).__name__}.solve")
            bm = torchsde.BrownianInterval(
                t0=0.0,
                t1=float(n),
                size=tuple(y0.shape),
                dtype=x.dtype,
                device=x.device,
                entropy=seed,
                dt=1.0,
                levy_area_approximation=self.levy_area,
            )
        common = dict(bm=bm, method=self.method, dt=1.0)
        if single_call:
            adapter.segment = None
            s_grid = torch.arange(n + 1, dtype=x.dtype, device=x.device)
            ys = adapter.sdeint(y0, s_grid, **common)
        else:
            states = [y0]
            for k in range(n):
                adapter.segment = k
                s_pair = torch.tensor([k, k + 1], dtype=x.dtype, device=x.device)
                states.append(adapter.sdeint(states[-1], s_pair, **common)[-1])
            ys = torch.stack(states)
        ys = ys.reshape(n + 1, *x.shape)
        raise_if_nonfinite(ys, ts)
        return ys[-1], ys, adapter.drift.calls


@SOLVERS.register("euler_maruyama")
class EulerMaruyama(TorchsdeSolver):
    """Euler-Maruyama: strong order 0.5 (1.0 for additive noise), weak order 1."""

    method = "euler"
    strong_order = 0.5
    weak_order = 1.0
    ode_twin = "euler"


@SOLVERS.register("milstein")
class Milstein(TorchsdeSolver):
    """Ito Milstein method (diagonal noise): strong order 1, weak order 1."""

    method = "milstein"
    strong_order = 1.0
    weak_order = 1.0
    ode_twin = "euler"


@SOLVERS.register("srk")
class SRK(TorchsdeSolver):
    """Stochastic Runge-Kutta (Roessler's SRI2 for diagonal noise): strong order 1.5.

    Uses the space-time Levy area of the Brownian motion. torchsde's SRID2
    re-evaluates the drift at each stage pair: 10 drift calls per step.
    """

    method = "srk"
    evaluates_step_end = True
    strong_order = 1.5
    weak_order = 1.5
    nfe_per_step = 10
    levy_area = "space-time"


@SOLVERS.register("reversible_heun")
class ReversibleHeun(TorchsdeSolver):
    """Reversible Heun (Stratonovich): strong order 0.5 (1.0 additive), weak order 1.

    One drift call per step plus one at the start of each torchsde call (so
    ``steps + 1`` on a uniform grid, ``2 * steps`` on a non-uniform one).

    The Ito SDE is converted to Stratonovich form (``f - g g' / 2``) unless it
    declares ``additive_noise = True``.
    """

    method = "reversible_heun"
    sde_type = "stratonovich"
    evaluates_step_end = True
    strong_order = 0.5
    weak_order = 1.0
