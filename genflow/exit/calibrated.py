"""Calibrated exit schedules: measured per-time error of each depth, best schedule under a FLOP budget.

Beyond the paper's hand-made staircase: on held-out data, :func:`measure_exit_errors`
estimates ``E || f_d(x_t, t) - f_full(x_t, t) ||^2`` for every depth ``d`` and time bin,
both predictions converted to one scale (eps by default), and
:meth:`CalibratedExit.fit` picks the non-increasing depth per bin that minimises
the time-averaged error while keeping at most ``budget`` of the block FLOPs
(uniformly in t), by the exact dynamic programme of :mod:`genflow.exit.budget`.

Why the eps scale: ``eps`` is standard normal at every t, so an error is comparable
across bins and is what the denoising loss measures; an ``x0`` error is the eps error
times ``sigma(t) / alpha(t)``, which vanishes near the data and explodes near the
noise, so it would put every block where the prediction matters least for DDIM-type
updates. ``scale="x0"`` is offered for processes or samplers where it is the right one.

References:
    Moon et al. 2024, "A Simple Early Exiting Framework for Accelerated Sampling in
    Diffusion Models" (ASE), sec. 3 (exit schedules; here chosen, not hand-made).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from itertools import pairwise
from typing import Any

import torch
from torch import Tensor, nn

from genflow.errors import ConfigError, ShapeError
from genflow.exit.base import EXIT_POLICIES, ExitPolicy, ExitSchedule, block_weights, equal_edges, model_num_blocks
from genflow.exit.budget import budget_units, choose_depths
from genflow.exit.schedules import TableExit, check_non_increasing
from genflow.model.flops import BlockFlops
from genflow.process.gaussian import GaussianProcess, check_parameterization
from genflow.random import require_generator, standard_normal
from genflow.validation import check_instance, check_state

__all__ = ["CalibratedExit", "measure_exit_errors", "choose_depths"]

SCALES = ("eps", "x0")


@torch.no_grad()
def measure_exit_errors(
    model: nn.Module,
    process: GaussianProcess,
    data: Tensor,
    *,
    edges: Sequence[float],
    generator: torch.Generator,
    scale: str = "eps",
    cond: Tensor | None = None,
    batch_size: int = 256,
) -> Tensor:
    """Mean squared gap between each truncated depth and the full model, per time bin.

    For every bin ``[e_b, e_{b+1})`` each data point gets one time uniform in the bin
    (clamped into ``[process.t_min, process.t_max]``) and one noise draw; the model runs
    at every depth on the same ``x_t`` (in eval mode, restored after).

    Args:
        model: Backbone with ``num_blocks`` accepting ``exit=``.
        process: The Gaussian process the model was trained on.
        data: Held-out clean samples ``(n, *event_shape)``.
        edges: Bin edges from 0 to 1.
        generator: Source of the times and noise.
        scale: ``eps`` or ``x0``: both predictions are converted to it before comparing.
        cond: Per-sample conditioning passed to the model.
        batch_size: Samples per model call.

    Returns:
        ``(bins, num_blocks + 1)`` float64 errors; the last column (full depth) is 0.
    """
    generator = require_generator(generator, "measure_exit_errors")
    check_instance(process, GaussianProcess, "process")
    data = check_state(data, "data")
    if scale not in SCALES:
        raise ConfigError(f"scale must be one of {', '.join(SCALES)}; got {scale!r}")
    num_blocks = model_num_blocks(model, "measure_exit_errors")
    kind = check_parameterization(getattr(model, "parameterization", ""))
    errors = torch.zeros(len(edges) - 1, num_blocks + 1, dtype=torch.float64)
    was_training = model.training
    model.eval()
    try:
        for b, (lo, hi) in enumerate(pairwise(edges)):
            for start in range(0, data.shape[0], batch_size):
                x0 = data[start : start + batch_size]
                c = None if cond is None else cond[start : start + batch_size]
                u = torch.rand(x0.shape[0], generator=generator, dtype=torch.float64, device=generator.device)
                t = (lo + (hi - lo) * u).clamp(process.t_min, process.t_max).to(x0.device, x0.dtype)
                xt = process.sample(x0, t, standard_normal(x0.shape, generator, dtype=x0.dtype, device=x0.device))

                def predict(depth: int, xt: Tensor = xt, t: Tensor = t, c: Any = c) -> Tensor:
                    return process.convert(model(xt, t, cond=c, exit=depth), kind, scale, xt, t)

                full = predict(num_blocks)
                for d in range(num_blocks):
                    errors[b, d] += (predict(d) - full).double().pow(2).flatten(1).mean(1).sum().cpu()
    finally:
        model.train(was_training)
    return errors / data.shape[0]


@EXIT_POLICIES.register("calibrated")
class CalibratedExit(ExitPolicy):
    """A non-increasing depth table chosen from measured errors under a FLOP budget.

    Build it with :meth:`fit`; the constructor rebuilds a fitted one from its config.

    Args:
        depths: Blocks to run per bin (non-increasing in t).
        num_blocks: The backbone depth it was fitted for.
        edges: Bin edges from 0 to 1; default equal bins.
        budget: The kept fraction of block FLOPs it was fitted under (recorded, not re-checked).
        errors: The measured ``(bins, num_blocks + 1)`` errors it was chosen from (recorded).
        scale: The scale the errors were measured in.

    Raises:
        ConfigError: depths growing with t, bad edges, or ``errors`` of the wrong shape.
        ComponentError: (when resolved) a backbone of another depth.
    """

    def __init__(
        self,
        depths: Sequence[int],
        num_blocks: int,
        edges: Sequence[float] | None = None,
        budget: float | None = None,
        errors: Sequence[Sequence[float]] | None = None,
        scale: str = "eps",
    ) -> None:
        self._table = TableExit(depths, num_blocks, edges)
        self.num_blocks = self._table.num_blocks
        check_non_increasing(list(depths), "CalibratedExit")
        self.budget, self.scale = budget, scale
        self.errors = None if errors is None else torch.as_tensor(errors, dtype=torch.float64)
        bins = len(self._table.schedule(self.num_blocks).depths)
        if self.errors is not None and tuple(self.errors.shape) != (bins, self.num_blocks + 1):
            raise ConfigError(
                f"CalibratedExit errors must be ({bins}, {self.num_blocks + 1}); got {tuple(self.errors.shape)}"
            )

    def _schedule(self, num_blocks: int) -> ExitSchedule:
        return self._table.schedule(num_blocks)

    @classmethod
    def fit(
        cls,
        model: nn.Module,
        process: GaussianProcess,
        data: Tensor,
        *,
        budget: float = 0.7,
        bins: int | Sequence[float] = 10,
        generator: torch.Generator,
        block_flops: BlockFlops | Sequence[float] | None = None,
        scale: str = "eps",
        cond: Tensor | None = None,
        batch_size: int = 256,
        times: Tensor | Sequence[float] | None = None,
    ) -> CalibratedExit:
        """Measure each depth's error per time bin on ``data`` and choose the schedule.

        Args:
            model: The trained backbone (``num_blocks``, ``exit=``).
            process: The process it was trained on.
            data: Held-out clean samples ``(n, *event_shape)`` (not the training set).
            budget: Largest kept fraction of block FLOPs, uniformly in t, in ``[0, 1]``.
            bins: Number of equal time bins, or their edges from 0 to 1.
            generator: Source of the measurement's times and noise.
            block_flops: The model's per-block FLOPs (``model.block_flops(x, t)``); default equal blocks.
            scale: ``eps`` (default) or ``x0``; see the module docstring.
            cond: Per-sample conditioning for ``data``.
            batch_size: Samples per model call.
            times: The times a sampler evaluates the model at (e.g. recorded from one run):
                each bin is then weighted by its share of those evaluations, in the error and
                in the budget, so ``budget`` is the kept fraction of block FLOPs over that
                sampler's calls (``flop_fraction(times=...)``) rather than uniformly in t.

        Returns:
            The fitted policy, with ``errors`` and ``budget`` recorded.

        Raises:
            ConfigError: a budget outside ``[0, 1]``, bad bins, or an unknown scale.
            ComponentError: a model without ``num_blocks``.
            ShapeError: empty ``times``.
        """
        if not 0.0 <= float(budget) <= 1.0:
            raise ConfigError(f"budget is a kept fraction of block FLOPs in [0, 1]; got {budget}")
        num_blocks = model_num_blocks(model, "CalibratedExit.fit")
        edges = equal_edges(bins) if isinstance(bins, int) else tuple(float(e) for e in bins)
        TableExit([num_blocks] * (len(edges) - 1), num_blocks, edges)  # validates the edges before measuring
        errors = measure_exit_errors(
            model, process, data, edges=edges, generator=generator, scale=scale, cond=cond, batch_size=batch_size
        )
        return cls.from_errors(errors, edges, budget=budget, block_flops=block_flops, times=times, scale=scale)

    @classmethod
    def from_errors(
        cls,
        errors: Tensor,
        edges: Sequence[float],
        *,
        budget: float,
        block_flops: BlockFlops | Sequence[float] | None = None,
        times: Tensor | Sequence[float] | None = None,
        scale: str = "eps",
    ) -> CalibratedExit:
        """The schedule of least error within ``budget``, from errors measured once (``policy.errors``).

        One measurement serves several budgets or samplers' ``times``; arguments as :meth:`fit`.

        Raises:
            ConfigError: a budget outside ``[0, 1]``, bad edges. ShapeError: errors of the wrong
                shape for the edges, or empty ``times``.
        """
        if not 0.0 <= float(budget) <= 1.0:
            raise ConfigError(f"budget is a kept fraction of block FLOPs in [0, 1]; got {budget}")
        errors = torch.as_tensor(errors, dtype=torch.float64)
        if errors.ndim != 2 or errors.shape[0] != len(edges) - 1 or errors.shape[1] < 2:
            raise ShapeError(f"errors must be (bins, num_blocks + 1) for {len(edges) - 1} bins; got "
                             f"{tuple(errors.shape)}")  # fmt: skip
        num_blocks = errors.shape[1] - 1
        schedule = TableExit([num_blocks] * (len(edges) - 1), num_blocks, edges).schedule(num_blocks)
        weights = block_weights(num_blocks, block_flops)
        kept = [sum(weights[:d]) / sum(weights) for d in range(num_blocks + 1)]
        if times is None:
            shares = [b - a for a, b in pairwise(schedule.edges)]
        else:
            values = torch.as_tensor(times, dtype=torch.float64).reshape(-1).tolist()
            if not values:
                raise ShapeError("CalibratedExit: times must not be empty")
            hits = [0] * len(schedule.depths)
            for t in values:
                hits[bisect.bisect_right(schedule.edges, t, 1, len(schedule.edges) - 1) - 1] += 1
            shares = [h / len(values) for h in hits]
        units, allowed = budget_units([[w * k for k in kept] for w in shares], float(budget))
        depths = choose_depths(errors * torch.tensor(shares, dtype=torch.float64)[:, None], units, allowed)
        return cls(list(depths), num_blocks, list(schedule.edges), float(budget), errors.tolist(), scale)

    def expected_error(self, policy: ExitPolicy | None = None) -> float:
        """Time-averaged measured error of ``policy`` (default this one) on this calibration's bins.

        Another policy is read at each bin's midpoint, so it is exact when that policy is
        constant within each calibration bin (a staircase on the same or coarser bins).

        Raises:
            ShapeError: no measured errors recorded.
        """
        if self.errors is None:
            raise ShapeError("CalibratedExit.expected_error needs the measured errors (fit, or errors=)")
        edges = self.schedule(self.num_blocks).edges
        policy = self if policy is None else policy
        total = 0.0
        for b, (lo, hi) in enumerate(pairwise(edges)):
            total += (hi - lo) * float(self.errors[b, policy.depth((lo + hi) / 2, self.num_blocks)])
        return total
