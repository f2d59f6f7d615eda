"""Exit policies: depths against their definitions, FLOP fractions, config round trips, typed errors."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import genflow as gf
from genflow.errors import ComponentError, ConfigError, DTypeError, ShapeError, UnknownComponentError
from genflow.exit import EXIT_POLICIES, CalibratedExit, FullExit, LinearExit, StaircaseExit, TableExit

ASE = [28, 28, 24, 24, 20, 20, 16, 16, 12, 12]

# one non-default instance per registered policy, and the backbone depth it is meant for
NON_DEFAULT = {
    "full": (lambda: FullExit(), 7),
    "staircase": (lambda: StaircaseExit(fractions=[1.0, 0.75, 0.3], edges=[0.0, 0.2, 0.65, 1.0]), 12),
    "linear": (lambda: LinearExit(start=0.9, end=0.2), 12),
    "table": (lambda: TableExit([2, 5, 1], num_blocks=6, edges=[0.0, 0.5, 0.6, 1.0]), 6),
    "calibrated": (
        lambda: CalibratedExit([3, 3, 1], 3, edges=[0.0, 0.3, 0.7, 1.0], budget=0.6, errors=[[1, 0.5, 0.2, 0]] * 3),
        3,
    ),
}


def test_every_registered_policy_has_a_non_default_case():
    assert set(EXIT_POLICIES.names()) == set(NON_DEFAULT)


@pytest.mark.parametrize("name", sorted(NON_DEFAULT))
def test_config_round_trip_gives_identical_depths(name):
    build, num_blocks = NON_DEFAULT[name]
    policy = build()
    clone = EXIT_POLICIES.from_config(policy.to_config())
    assert type(clone) is type(policy) and clone.to_config() == policy.to_config()
    t = torch.linspace(0, 1, 1001, dtype=torch.float64)
    assert torch.equal(clone.depths(t, num_blocks), policy.depths(t, num_blocks))


@pytest.mark.parametrize("name", sorted(NON_DEFAULT))
@given(times=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=20))
def test_device_depths_equal_host_depths(name, times):
    build, num_blocks = NON_DEFAULT[name]
    policy = build()
    on_tensor = policy.depths(torch.tensor(times, dtype=torch.float64), num_blocks).tolist()
    assert on_tensor == [policy.depth(t, num_blocks) for t in times]
    assert all(0 <= d <= num_blocks for d in on_tensor)


def test_published_staircase_keeps_20_of_28_blocks_uniformly_in_t():
    policy = StaircaseExit.ase_dit_xl()
    assert policy.flop_fraction(28) == pytest.approx(20 / 28, abs=1e-12)
    # the relative form resolves to the same depths on 28 blocks
    assert StaircaseExit.ase_dit_xl(relative=True).schedule(28).depths == tuple(ASE)
    # bins are closed on the left: t = 0.2 starts the third bin
    t = torch.tensor([0.0, 0.0999, 0.2, 0.45, 0.9, 1.0])
    assert policy.depths(t, 28).tolist() == [28, 28, 24, 20, 12, 12]


def test_flop_fraction_over_a_grid_and_with_measured_block_costs():
    policy = StaircaseExit.ase_dit_xl()
    grid = [0.05, 0.15, 0.95]  # depths 28, 28, 12
    assert policy.flop_fraction(28, times=grid) == pytest.approx((28 + 28 + 12) / (3 * 28))
    costs = list(range(1, 29))  # block k costs k + 1
    kept = [sum(costs[:d]) / sum(costs) for d in ASE]
    assert policy.flop_fraction(28, block_flops=costs) == pytest.approx(sum(kept) / 10)
    with pytest.raises(ShapeError):
        policy.flop_fraction(28, block_flops=[1.0] * 27)


@pytest.mark.parametrize(("start", "end", "blocks"), [(1.0, 0.5, 28), (0.9, 0.2, 12), (1.0, 0.375, 12), (0.5, 0.5, 6)])
def test_linear_is_the_nearest_depth_to_the_line(start, end, blocks):
    policy = LinearExit(start, end)
    t = torch.linspace(0, 1, 10_001, dtype=torch.float64)[:-1] + 0.5e-4  # off the tie points
    line = blocks * (start + (end - start) * t)
    assert torch.equal(policy.depths(t, blocks), torch.round(line).long())
    # uniform-in-t fraction: exact bins against a fine midpoint rule
    assert policy.flop_fraction(blocks) == pytest.approx(float(torch.round(line).mean()) / blocks, abs=2e-4)


def test_full_keeps_everything_and_depths_follow_t_shape_and_device():
    policy = FullExit()
    t = torch.rand(3, 2, generator=torch.Generator().manual_seed(0))
    depths = policy.depths(t, 5)
    assert depths.shape == (3, 2) and depths.dtype == torch.int64 and bool((depths == 5).all())
    assert policy.flop_fraction(5) == 1.0 and policy.depth(0.3, 5) == 5


def test_times_outside_the_unit_interval_take_the_end_bins():
    policy = StaircaseExit(depths=[4, 2])
    assert policy.depths(torch.tensor([-0.1, 1.5]), 4).tolist() == [4, 2]
    assert [policy.depth(-0.1, 4), policy.depth(1.5, 4)] == [4, 2]


def test_typed_errors():
    with pytest.raises(ComponentError, match=r"\[0, 20\]"):
        StaircaseExit.ase_dit_xl().schedule(20)  # 28 blocks asked of a 20-block backbone
    with pytest.raises(ConfigError, match="non-increasing"):
        StaircaseExit(depths=[2, 3])
    with pytest.raises(ConfigError, match="non-increasing"):
        LinearExit(start=0.2, end=0.8)
    with pytest.raises(ConfigError, match="non-increasing"):
        CalibratedExit([1, 2], 2)
    with pytest.raises(ConfigError, match="cover"):
        StaircaseExit(depths=[2, 1], edges=[0.0, 0.5, 0.9])
    with pytest.raises(ConfigError, match="increase"):
        TableExit([1, 1, 1], 2, edges=[0.0, 0.6, 0.4, 1.0])
    with pytest.raises(ConfigError, match="edges"):
        StaircaseExit(depths=[2, 1], edges=[0.0, 1.0])
    with pytest.raises(ConfigError):
        StaircaseExit(depths=[2, -1])
    with pytest.raises(ConfigError):
        StaircaseExit(fractions=[1.2])
    with pytest.raises(ConfigError, match="exactly one"):
        StaircaseExit()
    with pytest.raises(ComponentError, match="made for a backbone with 4"):
        TableExit([4, 2], 4).schedule(6)
    with pytest.raises(ComponentError, match=r"\[0, 2\]"):
        TableExit([3, 2], 2)
    with pytest.raises(ComponentError, match="num_blocks"):
        FullExit().schedule(None)
    with pytest.raises(DTypeError):
        FullExit().depths(torch.tensor([1, 2]), 4)
    with pytest.raises(ConfigError, match=r"\(2, 3\)"):
        CalibratedExit([2, 1], 2, errors=[[0.0, 0.0]])
    with pytest.raises(UnknownComponentError, match="staircase"):
        EXIT_POLICIES.create("stairs")
    with pytest.raises(TypeError, match="accepted arguments: start, end"):
        LinearExit(slope=1.0)


def test_policies_are_exported_at_the_top_level():
    assert gf.EXIT_POLICIES is EXIT_POLICIES and gf.StaircaseExit is StaircaseExit
    assert math.isclose(gf.LinearExit().flop_fraction(4), LinearExit().flop_fraction(4))
