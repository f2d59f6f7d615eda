"""The budgeted schedule programme against brute force, and the unit conversion against exact fractions."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from genflow.errors import ConfigError, ShapeError
from genflow.exit import StaircaseExit
from genflow.exit.budget import budget_units, choose_depths


def brute_force(errors: torch.Tensor, costs: torch.Tensor, budget: int) -> float:
    """Least total error over every non-increasing depth sequence within the budget (inf if none)."""
    bins, depths = errors.shape
    best = math.inf
    for seq in itertools.product(range(depths), repeat=bins):
        if any(b > a for a, b in zip(seq, seq[1:], strict=False)):
            continue
        if sum(int(costs[i, d]) for i, d in enumerate(seq)) <= budget:
            best = min(best, sum(float(errors[i, d]) for i, d in enumerate(seq)))
    return best


@settings(max_examples=60)
@given(
    seed=st.integers(0, 2**31 - 1),
    bins=st.integers(1, 4),
    depths=st.integers(1, 4),
    budget=st.integers(0, 20),
    equal_costs=st.booleans(),
)
def test_choose_depths_matches_brute_force(seed, bins, depths, budget, equal_costs):
    g = torch.Generator().manual_seed(seed)
    errors = torch.rand(bins, depths + 1, generator=g, dtype=torch.float64)
    if equal_costs:  # the usual case: cost d in every bin
        costs = torch.arange(depths + 1).repeat(bins, 1)
    else:
        costs = torch.randint(0, 6, (bins, depths + 1), generator=g)
    best = brute_force(errors, costs, budget)
    if math.isinf(best):
        with pytest.raises(ConfigError, match="budget"):
            choose_depths(errors, costs, budget)
        return
    chosen = choose_depths(errors, costs, budget)
    assert len(chosen) == bins
    assert all(b <= a for a, b in zip(chosen, chosen[1:], strict=False))
    assert sum(int(costs[i, d]) for i, d in enumerate(chosen)) <= budget
    assert sum(float(errors[i, d]) for i, d in enumerate(chosen)) == pytest.approx(best, abs=1e-12)


def test_a_budget_that_affords_everything_gives_full_depth_and_zero_affords_nothing():
    errors = torch.tensor([[3.0, 1.0, 0.0], [2.0, 0.5, 0.0]])
    costs = torch.tensor([[0, 1, 2], [0, 1, 2]])
    assert choose_depths(errors, costs, 4) == (2, 2)
    assert choose_depths(errors, costs, 0) == (0, 0)
    # budget 2: (2, 0) costs 2 with error 2, (1, 1) costs 2 with error 1.5: the programme trades evenly
    assert choose_depths(errors, costs, 2) == (1, 1)


def test_units_are_exact_for_equal_bins_and_blocks():
    # 10 equal bins, 28 equal blocks: depth d in a bin costs d / 280 of the FLOPs
    costs = [[0.1 * d / 28 for d in range(29)] for _ in range(10)]
    units, allowed = budget_units(costs, 20 / 28)
    assert allowed == 200 and torch.equal(units, torch.arange(29).repeat(10, 1))
    # so the published staircase fits a budget of exactly its own FLOP fraction
    ase = StaircaseExit.ase_dit_xl()
    budget = ase.flop_fraction(28)
    units, allowed = budget_units(costs, budget)
    assert sum(int(units[b, d]) for b, d in enumerate(ase.schedule(28).depths)) == allowed


def test_units_fall_back_to_conservative_rounding():
    costs = [[0.0, 1 / 7919, 1 / 7907]]  # two large primes: exact units would need ~6e7
    units, allowed = budget_units(costs, 0.5, max_units=1000)
    assert units.tolist() == [[0, 1, 1]] and allowed == 500
    units, allowed = budget_units([[0.0, 0.3333]], 0.3333, max_units=100)
    assert units[0, 1] >= allowed  # rounded up vs down: never over budget


def test_shape_errors():
    with pytest.raises(ShapeError):
        choose_depths(torch.zeros(2, 3), torch.zeros(2, 4, dtype=torch.int64), 3)
    with pytest.raises(ConfigError):
        choose_depths(torch.zeros(2, 3), -torch.ones(2, 3, dtype=torch.int64), 3)
