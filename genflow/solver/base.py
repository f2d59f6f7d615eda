"""The :class:`Solver` ABC, the :class:`Solution` it returns, and the field protocols.

A solver integrates over a time grid ``ts`` (1-D, strictly monotone, in
``[0, 1]``; samplers run it decreasing, from noise to data). Each solver says
what it integrates through :meth:`Solver.field_from`, which the
:class:`~genflow.sampling.Sampler` calls with its model adapter; the backend
families answer:

* ODE solvers (:class:`~genflow.solver.ode.TorchdiffeqSolver`): a vector field
  ``field(x, t) -> dx/dt`` (the probability-flow velocity);
* SDE solvers (:class:`~genflow.solver.sde.TorchsdeSolver`): an :class:`SDE`,
  an object with ``drift(x, t)`` and ``diffusion(x, t)`` (Ito, diagonal noise,
  same shape as ``x``), optionally ``additive_noise = True``;
* native diffusion samplers: a :class:`Denoiser` (a process plus an
  ``(x0, eps)`` prediction), for samplers that use the process's schedule.

Solvers declare their numerics as class data (``kind``, ``order``,
``strong_order``, ``weak_order``, ``nfe_per_step``, ``is_stochastic``,
``default_grid``); tests and registration checks read them.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, runtime_checkable

import torch
from torch import Tensor

from genflow.config import Configurable
from genflow.errors import NonFiniteError, RegistryError, ShapeError, UnknownArgumentError
from genflow.registry import Registry
from genflow.validation import check_state, check_time_grid, times_validated

__all__ = [
    "Solver",
    "Solution",
    "SDE",
    "Denoiser",
    "SOLVERS",
    "CountingField",
    "raise_if_nonfinite",
    "synchronize",
]

Field = Callable[[Tensor, Tensor], Tensor]


@runtime_checkable
class SDE(Protocol):
    """An Ito SDE ``dx = drift(x, t) dt + diffusion(x, t) dW`` with diagonal noise."""

    def drift(self, x: Tensor, t: Tensor) -> Tensor: ...

    def diffusion(self, x: Tensor, t: Tensor) -> Tensor: ...


@runtime_checkable
class Denoiser(Protocol):
    """What a native diffusion sampler needs: the process and an ``(x0, eps)`` prediction."""

    process: Any

    def predict(self, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]: ...


@dataclass
class Solution:
    """Result of :meth:`Solver.solve`.

    Attributes:
        x: Final state, shape of the input.
        ts: The time grid solved over.
        trajectory: States at every time of ``ts``, shape ``(len(ts), *x.shape)``,
            or ``None`` unless requested.
        nfe: Number of evaluations of the field (model calls for a sampler).
        seconds: Wall-clock time of the solve (device synchronised).
    """

    x: Tensor
    ts: Tensor
    trajectory: Tensor | None
    nfe: int
    seconds: float


class CountingField:
    """Wraps a callable and counts its calls (the exact NFE, no device sync)."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn
        self.calls = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return self.fn(*args, **kwargs)


def synchronize(x: Tensor) -> None:
    """Wait for queued kernels on ``x``'s device so wall-clock times are honest."""
    if x.device.type == "cuda":
        torch.cuda.synchronize(x.device)


def raise_if_nonfinite(states: Tensor, ts: Tensor, what: str = "state") -> None:
    """Raise :class:`NonFiniteError` naming the first grid interval whose end state is not finite.

    Args:
        states: ``(len(ts), batch, ...)`` states at the grid times, or a
            ``(len(ts),)`` bool tensor of per-time "all finite" flags.
        ts: The grid.

    Only the final state is checked on the normal path (NaN and Inf propagate
    through a solver's arithmetic), at the cost of one device-to-host copy; the
    trajectory is searched only to locate a failure.
    """
    if states.dtype == torch.bool:
        finite = states
    else:
        if bool(torch.isfinite(states[-1]).all()):
            return
        finite = torch.isfinite(states.reshape(states.shape[0], -1)).all(dim=1)
    if bool(finite.all()):
        return
    k = int((~finite).nonzero()[0, 0])
    t_k = float(ts[k])
    if k == 0:
        raise NonFiniteError(f"the initial {what} at t={t_k:.6g} contains NaN or Inf", time=t_k)
    raise NonFiniteError(
        f"NaN or Inf appeared in the {what} between t={float(ts[k - 1]):.6g} and t={t_k:.6g} "
        f"(grid step {k} of {ts.numel() - 1})",
        time=t_k,
    )


class Solver(Configurable, ABC):
    """Integrates a field, an SDE or a denoiser over a monotone time grid.

    Subclasses implement :meth:`field_from` (what they integrate, given a
    :class:`~genflow.sampling.ModelDenoiser`) and :meth:`_solve`, and declare at
    class level:
        kind: A short name of the solver family (``"ode"``, ``"sde"``,
            ``"diffusion"`` for genflow's own); documentation only, nothing
            dispatches on it.
        order: Global order of an ODE method (``None`` for SDE solvers).
        strong_order / weak_order: Orders of an SDE method (general diagonal noise).
        nfe_per_step: Field evaluations per step (for adaptive solvers, per attempt).
        is_stochastic: Whether the result depends on a generator.
        adaptive: Whether it chooses its own steps (then ``ts`` are output times).
        default_grid: Name of the time grid (in ``TIME_GRIDS``) the sampler uses
            with this solver when none is given; ``None`` defers to the process.
    """

    kind: ClassVar[str]
    order: ClassVar[float | None] = None
    strong_order: ClassVar[float | None] = None
    weak_order: ClassVar[float | None] = None
    nfe_per_step: ClassVar[int] = 1
    is_stochastic: ClassVar[bool] = False
    adaptive: ClassVar[bool] = False
    ode_twin: ClassVar[str | None] = None
    """For SDE solvers: the registered ODE solver this one reduces to at zero diffusion (None if none)."""
    default_grid: ClassVar[str | None] = None

    @abstractmethod
    def field_from(self, denoiser: Any) -> Any:
        """What this solver integrates when sampling from a model.

        Args:
            denoiser: A :class:`~genflow.sampling.ModelDenoiser` (``process``,
                ``predict``, ``score``, ``velocity``, ``reverse_sde()``, ``calls``).

        Returns:
            The ``field`` argument :meth:`solve` expects (e.g. ``denoiser.velocity``).
        """

    def solve(
        self,
        field: Any,
        x: Tensor,
        ts: Any,
        *,
        generator: torch.Generator | None = None,
        return_trajectory: bool = False,
        **options: Any,
    ) -> Solution:
        """Integrate from ``x`` at ``ts[0]`` over the grid ``ts``.

        Args:
            field: What to integrate (see the module docstring, by ``kind``).
            x: Initial state ``(batch, *event_shape)``.
            ts: 1-D strictly monotone grid in ``[0, 1]``; one point returns ``x``.
            generator: Source of randomness for stochastic solvers.
            return_trajectory: Also return the states at every time of ``ts``.
            **options: Solver-family extras (e.g. ``brownian`` for SDE solvers).

        Returns:
            A :class:`Solution` with the final state, NFE and wall time.

        Raises:
            DTypeError / ShapeError: bad ``x``.
            UnknownArgumentError: an option not in ``solve_options`` (a ``TypeError``).
            TimeGridError / TimeRangeError: bad ``ts``.
            NonFiniteError: NaN or Inf produced, with the time it appeared.
            GeneratorRequiredError: a stochastic solver without ``generator`` (or ``brownian``).
        """
        x = check_state(x)
        ts = check_time_grid(ts, like=x)
        unknown = set(options) - set(self.solve_options)
        if unknown:
            raise UnknownArgumentError(
                f"{type(self).__name__}.solve() got unexpected option(s) {sorted(unknown)}; "
                f"accepted: {sorted(self.solve_options) or '(none)'}"
            )
        if ts.numel() == 1:
            traj = x.unsqueeze(0) if return_trajectory else None
            return Solution(x=x, ts=ts, trajectory=traj, nfe=0, seconds=0.0)
        start = time.perf_counter()
        with times_validated():  # ts is range-checked: the field's process calls skip their own checks
            final, trajectory, nfe = self._solve(
                field, x, ts, generator=generator, return_trajectory=return_trajectory, **options
            )
        synchronize(final)
        seconds = time.perf_counter() - start
        if final.shape != x.shape:
            raise ShapeError(f"{type(self).__name__} returned shape {tuple(final.shape)}; expected {tuple(x.shape)}")
        return Solution(x=final, ts=ts, trajectory=trajectory if return_trajectory else None, nfe=nfe, seconds=seconds)

    solve_options: ClassVar[tuple[str, ...]] = ()
    """Extra keyword options :meth:`solve` accepts for this solver."""

    @abstractmethod
    def _solve(
        self,
        field: Any,
        x: Tensor,
        ts: Tensor,
        *,
        generator: torch.Generator | None,
        return_trajectory: bool,
        **options: Any,
    ) -> tuple[Tensor, Tensor | None, int]:
        """Integrate over a validated grid with ``len(ts) >= 2``.

        Returns:
            ``(final state, trajectory at ts or None, nfe)``; the trajectory may
            be ``None`` unless ``return_trajectory``. Implementations check the
            states at the grid points with :func:`raise_if_nonfinite`.
        """

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.to_config().items() if k != "name")
        return f"{type(self).__name__}({args})"


def _check_declarations(cls: type[Solver]) -> None:
    """Registration-time check that a solver declares its numerics (diffrax-style)."""
    kind = getattr(cls, "kind", None)
    if not (isinstance(kind, str) and kind.isidentifier()):
        raise RegistryError(f"{cls.__name__} must declare kind, a short family name such as 'ode'; got {kind!r}")
    if kind == "sde" and (cls.strong_order is None or cls.weak_order is None):
        raise RegistryError(f"SDE solver {cls.__name__} must declare strong_order and weak_order")
    if kind == "ode" and cls.order is None:
        raise RegistryError(f"ODE solver {cls.__name__} must declare its order")
    if not (isinstance(cls.nfe_per_step, int) and cls.nfe_per_step >= 1):
        raise RegistryError(f"{cls.__name__}.nfe_per_step must be an int >= 1; got {cls.nfe_per_step!r}")
    if cls.default_grid is not None and not isinstance(cls.default_grid, str):
        raise RegistryError(f"{cls.__name__}.default_grid must be a time-grid name or None; got {cls.default_grid!r}")


SOLVERS: Registry[Solver] = Registry("solver", Solver, check=_check_declarations)
