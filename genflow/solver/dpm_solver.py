"""DPM-Solver++ multistep samplers of order 1, 2 and 3 (Lu et al. 2022b).

``DPMSolverPP(order=k)`` is the registered family ``dpm_solver_pp``; it builds
the leaf :class:`DPMSolverPP1`, :class:`DPMSolverPP2M` or :class:`DPMSolverPP3M`,
each declaring its ``order`` on the class.

References:
    Lu et al. 2022b, "DPM-Solver++: Fast Solver for Guided Sampling of Diffusion
    Probabilistic Models", Algorithm 2 (2M) and the third-order multistep update.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from genflow.errors import ConfigError
from genflow.solver.base import SOLVERS
from genflow.solver.diffusion import DiffusionSampler
from genflow.solver.grid_schedule import GridSchedule

__all__ = ["DPMSolverPP", "DPMSolverPP1", "DPMSolverPP2M", "DPMSolverPP3M"]


@SOLVERS.register("dpm_solver_pp")
class DPMSolverPP(DiffusionSampler):
    """DPM-Solver++ multistep in data prediction, order 1, 2 or 3.

    The update from ``t`` to ``s`` with ``h = lambda_s - lambda_t`` is
    ``x_s = (sigma_s/sigma_t) x_t - alpha_s phi1 D0 + alpha_s phi2 D1 - alpha_s phi3 D2``
    with ``phi1 = expm1(-h)``, ``phi2 = phi1/h + 1``, ``phi3 = phi2/h - 1/2`` and
    ``D0, D1, D2`` estimating ``x0, h x0', h^2 x0''`` in ``lambda``. Note on 3M:
    the widely copied reference update uses half of this ``D2`` (the second
    divided difference without its factor 2), which caps its global order near
    2 (measured 2.1-2.2 here); with the consistent factor the measured order is
    3 (``tests/solver/test_diffusion.py``). 2M is the paper's Algorithm 2
    (``D = (1 + 1/(2r)) x0_t - 1/(2r) x0_prev``).

    Order per step (:meth:`step_orders`): the first steps warm up with lower
    orders; a step to ``sigma = 0`` (infinite ``lambda``) is first order; and
    with ``lower_order_final`` a step whose ``h`` exceeds ``max_step_ratio``
    times the previous one drops an order per such ratio, because a multistep
    update extrapolates the earlier predictions over the new step and that
    extrapolation blows up when the step grows fast (the end of a uniform or
    quadratic grid in ``t``, where ``lambda`` rises steeply). The last step of
    a run shorter than 15 steps is always at most second order, and the last
    two at most second and first, as in the reference implementation. A
    third-order step is planned only while ``h <= max_third_order_step`` (1.0).

    Per sample (with ``lower_order_final``; genflow's addition, measured in
    docs/benchmarks/dpm_solver_steps.md): each sample's own last three data
    predictions decide how far its extrapolation is trusted, so a sample's
    result never depends on the rest of the batch.

    * A second-order step is first order for a sample whose data prediction is
      relaxing fast: when its last two changes (per unit ``lambda``) shrink by
      more than ``max_second_order_decay`` (1.0) e-folds over one step. Near the
      data ``x0_hat`` approaches its limit like ``exp(-2 lambda)``; for such a
      decaying mode ``exp(-c lambda)`` and equal steps, a short calculation
      puts the point where the linear extrapolation errs more than the constant
      one near ``c h = 1``; ``tests/solver/test_diffusion.py`` checks the rule
      through the solver at ``c h = 2`` (it helps) and ``0.5`` (it stays off).
    * A third-order step longer than ``min_checked_third_order_step`` (0.25)
      is kept for a sample only while its third-order correction is at most
      ``max_third_order_ratio`` (0.25) times its second-order one, i.e. while
      the expansion of ``x0_hat`` in ``lambda`` visibly converges; otherwise
      the sample takes the (decay-checked) second-order step. Where a sample's
      prediction switches between the mixture's modes the quadratic
      extrapolation overshoots: without the check 3M erred more at 11 steps
      than at 10 on the Karras grid. Shorter steps are not checked: a few
      samples whose prediction turns sharply keep failing the check long after
      third order pays off for them (checked at every step, 3M's measured
      order at 40-320 steps fell from 3.0 to 2.4).

    Neither check costs the declared order as steps shrink: the decay over a
    step scales with ``h``, and the ratio check stops below
    ``min_checked_third_order_step`` (``test_dpm_solver_converges_at_its_order``
    runs with and without the rules). ``lower_order_final=False`` is the
    paper's update with the warm-up only.

    Args:
        order: 1 (equals deterministic DDIM), 2 (2M, the default) or 3 (3M); a leaf built
            directly has its own.
        lower_order_final: Lower the order at the end of short runs and where the step grows fast, and
            apply the per-sample checks; ``False`` runs the paper's update (warm-up only).

    Raises:
        ConfigError: ``order`` not 1, 2 or 3, or not the order of the leaf built directly.
    """

    order: ClassVar[int] = 2  # the family's default member; each leaf declares its own order
    default_grid = "uniform"  # measured: docs/benchmarks/default_grids.md (1, 2M and 3M: uniform)
    max_step_ratio: ClassVar[float] = 2.0
    max_third_order_step: ClassVar[float] = 1.0
    max_second_order_decay: ClassVar[float] = 1.0
    max_third_order_ratio: ClassVar[float] = 0.25
    min_checked_third_order_step: ClassVar[float] = 0.25

    def __new__(cls, order: int | None = None, lower_order_final: bool = True, **unknown: Any) -> DPMSolverPP:
        # unknown keys are refused by the constructor's argument check (an UnknownArgumentError listing them)
        if cls is DPMSolverPP:
            order = DPMSolverPP.order if order is None else order
            if order not in _LEAVES:
                raise ConfigError(f"DPMSolverPP order must be 1, 2 or 3; got {order!r}")
            cls = _LEAVES[order]
        return super().__new__(cls)

    def __init__(self, order: int | None = None, lower_order_final: bool = True) -> None:
        if order is not None and order != type(self).order:
            raise ConfigError(f"{type(self).__name__} is order {type(self).order}; got order={order!r}")
        self._config_args["order"] = type(self).order  # a leaf built directly records its order too
        self.lower_order_final = bool(lower_order_final)

    def step_orders(self, schedule: GridSchedule) -> list[int]:
        """The order used at each step of this grid (see the class docstring)."""
        lam, n = schedule.log_snr, schedule.steps
        orders = []
        for k in range(n):
            order = min(self.order, k + 1)
            if not math.isfinite(lam[k + 1]):
                order = 1
            elif self.lower_order_final:
                if n < 15:
                    order = min(order, n - k)
                h = lam[k + 1] - lam[k]
                for j in range(1, order):
                    if h > self.max_step_ratio * (lam[k + 1 - j] - lam[k - j]):
                        order = j
                        break
                if order == 3 and h > self.max_third_order_step:
                    order = 2
            orders.append(order)
        return orders

    def _prepare(self, schedule):
        return _Plan(self.step_orders(schedule))

    def _step(self, x, x0, eps, k, run):
        sch, history, plan = run.schedule, run.history, run.plan
        lam = sch.log_snr
        h = lam[k + 1] - lam[k]
        a_s = sch.alpha[k + 1]
        phi1 = math.expm1(-h)
        base = torch.add((sch.sigma[k + 1] / sch.sigma[k]) * x, x0, alpha=-(a_s * phi1))
        order = plan.orders[k]
        if order == 1:
            return base
        change = history[-1] - history[-2]  # the latest change of x0_hat, over the previous step
        r0 = (lam[k] - lam[k - 1]) / h
        second_order = torch.add(base, change, alpha=-0.5 * a_s * phi1 / r0)  # 2M: D1 = change / r0
        checks = self.lower_order_final
        change_norm = plan.remember_change_norm(k, change) if checks else None
        if len(history) < 3 or (order == 2 and not checks):
            return second_order
        r1 = (lam[k - 1] - lam[k - 2]) / h
        if not checks:
            return _third_order(base, change, history, h, a_s, r0, r1)
        lowered = second_order
        if math.isfinite(self.max_second_order_decay):
            # decay over the step: log(|D1_old| / |D1_new|) / ((r0 + r1) / 2) with D1 = change / r, compared
            # without a log; a vanished change after a non-zero one reads as infinitely fast decay
            old_norm = plan.change_norm_before(k, history)
            bound = (r1 / r0) * math.exp(self.max_second_order_decay * 0.5 * (r0 + r1))
            decaying = old_norm > bound * change_norm
            lowered = torch.where(decaying.view(_per_sample(x)), base, second_order)
        if order == 2:
            return lowered
        third_order = _third_order(base, change, history, h, a_s, r0, r1)
        if h <= self.min_checked_third_order_step:
            return third_order
        # |second_order - base| = |a_s phi1 / 2| |change| / r0: the check costs one more norm
        second_correction = abs(0.5 * a_s * phi1 / r0) * change_norm
        converging = _norms(third_order - second_order) <= self.max_third_order_ratio * second_correction
        return torch.where(converging.view(_per_sample(x)), third_order, lowered)


def _third_order(
    base: Tensor, change: Tensor, history: list[Tensor], h: float, a_s: float, r0: float, r1: float
) -> Tensor:
    """The 3M update from the first-order ``base`` and the last two changes of ``x0_hat`` (``r`` = step ratios)."""
    phi2 = math.expm1(-h) / h + 1.0
    phi3 = phi2 / h - 0.5
    d1_0, d1_1 = change / r0, (history[-2] - history[-3]) / r1
    # D1 ~ h x0'(lambda) = d1_0 + r0/(r0+r1) (d1_0 - d1_1); D2 ~ h^2 x0'' = 2 (d1_0 - d1_1)/(r0+r1)
    second = (d1_0 - d1_1) / (r0 + r1)
    return base + (a_s * phi2) * d1_0 + (a_s * (phi2 * r0 - 2.0 * phi3)) * second


@dataclass
class _Plan:
    """The planned order per step, and the per-sample norm of the last change of ``x0_hat`` (for the checks)."""

    orders: list[int]
    current: tuple[int, Tensor] | None = None  # (step, norm of history[-1] - history[-2] at that step)
    previous: tuple[int, Tensor] | None = None

    def remember_change_norm(self, k: int, change: Tensor) -> Tensor:
        norm = _norms(change)
        self.previous, self.current = self.current, (k, norm)
        return norm

    def change_norm_before(self, k: int, history: list[Tensor]) -> Tensor:
        """Norm of the change one step earlier (``history[-2] - history[-3]``): remembered, or computed."""
        if self.previous is not None and self.previous[0] == k - 1:
            return self.previous[1]
        return _norms(history[-2] - history[-3])


def _per_sample(x: Tensor) -> tuple[int, ...]:
    return (-1,) + (1,) * (x.dim() - 1)


def _norms(t: Tensor) -> Tensor:
    """Per-sample Euclidean norms, outside the graph (they only choose between updates)."""
    return torch.linalg.vector_norm(t.detach().flatten(1), dim=1)


class DPMSolverPP1(DPMSolverPP):
    """DPM-Solver++ of order 1 (equals deterministic DDIM)."""

    order = 1


class DPMSolverPP2M(DPMSolverPP):
    """DPM-Solver++(2M), the paper's Algorithm 2."""

    order = 2


class DPMSolverPP3M(DPMSolverPP):
    """DPM-Solver++(3M) with the consistent second divided difference."""

    order = 3


_LEAVES: dict[int, type[DPMSolverPP]] = {1: DPMSolverPP1, 2: DPMSolverPP2M, 3: DPMSolverPP3M}
