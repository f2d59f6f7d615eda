"""Choosing a non-increasing depth per time bin that minimises error under a FLOP budget.

Given a cost ``c[b, d]`` (integer budget units) and an error ``e[b, d]`` of running
``d`` blocks in bin ``b``, :func:`choose_depths` solves exactly

    min_{d_0 >= d_1 >= ... >= d_{K-1}}  sum_b e[b, d_b]   s.t.   sum_b c[b, d_b] <= B

by dynamic programming over (bin, depth, units spent): ``V_b[d, u] = e[b, d] +
min_{d' >= d} V_{b-1}[d', u - c[b, d]]``, the inner minimum a running minimum over
depths, so the work is ``O(K (D + 1) (B + 1))``. :func:`budget_units` turns real
costs (fractions of FLOPs) into integer units, exactly when their denominators
allow it and conservatively (costs rounded up, the budget down) otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction

import torch
from torch import Tensor

from genflow.errors import ConfigError, ShapeError

__all__ = ["choose_depths", "budget_units"]

MAX_UNITS = 20_000
"""Largest number of budget units the programme uses (beyond it, costs are rounded up to a grid)."""


def budget_units(costs: Sequence[Sequence[float]], budget: float, *, max_units: int = MAX_UNITS) -> tuple[Tensor, int]:
    """Integer costs and budget on a common unit.

    Each cost and the budget is read as a fraction with denominator at most 10^6
    (``0.1 -> 1/10``, ``20/28`` stays ``5/7``); when the least common denominator is at
    most ``max_units`` the integers are exact. Otherwise ``max_units`` units are used,
    costs rounded up and the budget down, so the chosen schedule never exceeds ``budget``.

    Returns:
        ``(units, budget_units)``: an int64 tensor shaped like ``costs`` and an int.
    """
    exact = [[Fraction(c).limit_denominator(10**6) for c in row] for row in costs]
    total = Fraction(budget).limit_denominator(10**6)
    scale = math.lcm(total.denominator, *(c.denominator for row in exact for c in row))
    if scale <= max_units:
        units = [[int(c * scale) for c in row] for row in exact]
        return torch.tensor(units, dtype=torch.int64), int(total * scale)
    units = [[math.ceil(c * max_units) for c in row] for row in exact]
    return torch.tensor(units, dtype=torch.int64), math.floor(total * max_units)


def choose_depths(errors: Tensor, costs: Tensor, budget: int) -> tuple[int, ...]:
    """The non-increasing depths (one per bin) of least total error within the budget.

    Args:
        errors: ``(K, D + 1)`` error of depth ``d`` in bin ``b`` (bin 0 nearest the data).
        costs: ``(K, D + 1)`` non-negative integer cost of depth ``d`` in bin ``b``.
        budget: Total cost allowed (integer, same units).

    Returns:
        ``K`` depths, non-increasing; ties go to the first minimum found.

    Raises:
        ShapeError: ``errors`` and ``costs`` differ in shape or are not 2-D.
        ConfigError: negative costs, or no non-increasing schedule fits the budget.
    """
    if errors.ndim != 2 or errors.shape != costs.shape:
        raise ShapeError(f"errors and costs must both be (bins, depths + 1); got {tuple(errors.shape)}, "
                         f"{tuple(costs.shape)}")
    if bool((costs < 0).any()) or budget < 0:
        raise ConfigError(f"costs and budget must be non-negative; got budget {budget}")
    errors, costs = errors.to(torch.float64).cpu(), costs.to(torch.int64).cpu()
    bins, depths = errors.shape
    inf = torch.tensor(math.inf, dtype=torch.float64)
    value = torch.full((depths, budget + 1), math.inf, dtype=torch.float64)  # V[d, units spent]
    for d in range(depths):
        if costs[0, d] <= budget:
            value[d, costs[0, d]] = errors[0, d]
    pointers = []  # pointers[b - 1][d, u]: depth of bin b - 1 behind the best V_b[d, u]
    for b in range(1, bins):
        # best over d' >= d of the previous bin: a running minimum from the deepest depth down
        best, index = torch.cummin(value.flip(0), dim=0)
        best, previous = best.flip(0), (depths - 1 - index).flip(0)
        new = torch.full_like(value, math.inf)
        pointer = torch.zeros((depths, budget + 1), dtype=torch.int16)
        for d in range(depths):
            c = int(costs[b, d])
            if c <= budget:
                new[d, c:] = errors[b, d] + best[d, : budget + 1 - c]
                pointer[d, c:] = previous[d, : budget + 1 - c].to(torch.int16)
        value = torch.where(torch.isnan(new), inf, new)
        pointers.append(pointer)
    flat = int(torch.argmin(value))
    if not math.isfinite(float(value.reshape(-1)[flat])):
        raise ConfigError(f"no non-increasing schedule fits a budget of {budget} units (cheapest needs more)")
    depth, spent = divmod(flat, budget + 1)
    chosen = [depth]
    for b in range(bins - 1, 0, -1):
        previous_depth = int(pointers[b - 1][depth, spent])
        spent -= int(costs[b, depth])
        depth = previous_depth
        chosen.append(depth)
    return tuple(reversed(chosen))
