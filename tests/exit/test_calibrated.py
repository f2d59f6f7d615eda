"""Calibrated schedules: measured errors by hand, the fitted schedule against brute force, config round trip."""

from __future__ import annotations

import itertools

import pytest
import torch

import genflow as gf
from genflow.errors import ComponentError, ConfigError, ShapeError
from genflow.exit import EXIT_POLICIES, CalibratedExit, StaircaseExit
from genflow.exit.calibrated import measure_exit_errors
from genflow.random import standard_normal
from tests.exit.helpers import tiny_dit


def _data(n: int = 6) -> torch.Tensor:
    return torch.randn(n, 1, 8, 8, generator=torch.Generator().manual_seed(3))


@torch.no_grad()
def test_measured_errors_equal_the_gap_computed_by_hand():
    model, process, data = tiny_dit(parameterization="v"), gf.VPProcess(), _data()
    edges = (0.0, 0.5, 1.0)
    errors = measure_exit_errors(model, process, data, edges=edges, generator=torch.Generator().manual_seed(7))
    assert errors.shape == (2, 5) and bool((errors[:, -1] == 0).all()) and bool((errors[:, :-1] > 0).all())
    g = torch.Generator().manual_seed(7)  # the same draws, in the same order, by hand
    for b, (lo, hi) in enumerate([(0.0, 0.5), (0.5, 1.0)]):
        u = torch.rand(6, generator=g, dtype=torch.float64)
        t = (lo + (hi - lo) * u).clamp(process.t_min, process.t_max).float()
        xt = process.sample(data, t, standard_normal(data.shape, g, dtype=torch.float32, device="cpu"))
        full = process.convert(model(xt, t), "v", "eps", xt, t)
        for d in range(4):
            gap = (process.convert(model(xt, t, exit=d), "v", "eps", xt, t) - full).pow(2).mean()
            assert float(errors[b, d]) == pytest.approx(float(gap), rel=1e-4)


def test_fit_chooses_the_best_non_increasing_schedule_within_the_budget():
    model, process = tiny_dit(), gf.VPProcess()
    policy = CalibratedExit.fit(model, process, _data(), budget=0.5, bins=4, generator=torch.Generator().manual_seed(0))
    depths = policy.schedule(4).depths
    assert all(b <= a for a, b in zip(depths, depths[1:], strict=False))
    assert policy.flop_fraction(4) <= 0.5 + 1e-12
    # brute force over every non-increasing schedule on the recorded errors
    best = min(
        sum(0.25 * float(policy.errors[b, d]) for b, d in enumerate(seq))
        for seq in itertools.product(range(5), repeat=4)
        if all(y <= x for x, y in zip(seq, seq[1:], strict=False)) and sum(seq) <= 8
    )
    assert policy.expected_error() == pytest.approx(best, abs=1e-12)
    # never worse than a hand-made staircase of the same FLOPs on the same measurement
    assert policy.expected_error() <= policy.expected_error(StaircaseExit(depths=[4, 2, 1, 1])) + 1e-12


def test_fitted_policy_round_trips_and_drives_the_wrapper():
    model = tiny_dit()
    policy = CalibratedExit.fit(
        model, gf.VPProcess(), _data(4), budget=0.6, bins=[0.0, 0.3, 1.0], generator=torch.Generator().manual_seed(1)
    )
    clone = EXIT_POLICIES.from_config(policy.to_config())
    t = torch.linspace(0, 1, 101)
    assert torch.equal(clone.depths(t, 4), policy.depths(t, 4)) and torch.equal(clone.errors, policy.errors)
    assert clone.budget == 0.6 and clone.to_config() == policy.to_config()
    x = _data(2)
    wrapped = gf.EarlyExitModel(model, clone)
    assert torch.equal(wrapped(x, 0.9), model(x, torch.full((2,), 0.9), exit=policy.depth(0.9, 4)))


def test_fit_errors():
    with pytest.raises(ConfigError, match="budget"):
        CalibratedExit.fit(tiny_dit(), gf.VPProcess(), _data(), budget=1.5, generator=torch.Generator())
    with pytest.raises(ComponentError, match="num_blocks"):
        CalibratedExit.fit(gf.MLPScoreNet(), gf.VPProcess(), torch.zeros(4, 2), generator=torch.Generator())
    with pytest.raises(ConfigError, match="cover"):
        CalibratedExit.fit(tiny_dit(), gf.VPProcess(), _data(), bins=[0.1, 1.0], generator=torch.Generator())
    with pytest.raises(ConfigError, match="scale"):
        CalibratedExit.fit(tiny_dit(), gf.VPProcess(), _data(), scale="score", generator=torch.Generator())


def test_fit_over_a_samplers_times_keeps_the_budget_over_those_times():
    model, process = tiny_dit(), gf.VPProcess()

    def fit(**kwargs):
        generator = torch.Generator().manual_seed(0)
        return CalibratedExit.fit(model, process, _data(), budget=0.5, bins=4, generator=generator, **kwargs)

    midpoints = [0.125, 0.375, 0.625, 0.875]  # one evaluation per equal bin: the uniform fit
    assert fit(times=midpoints).schedule(4).depths == fit().schedule(4).depths
    times = [0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.6]  # most calls near the data, as on a log-SNR grid
    policy = fit(times=times)
    assert policy.flop_fraction(4, times=times) <= 0.5
    assert fit().flop_fraction(4, times=times) > 0.5  # the uniform fit overspends on these times
    with pytest.raises(ShapeError, match="times"):
        fit(times=[])


def test_from_errors_rechooses_without_measuring_again():
    policy = CalibratedExit.fit(tiny_dit(), gf.VPProcess(), _data(), budget=0.5, bins=4,
                                generator=torch.Generator().manual_seed(0))  # fmt: skip
    edges = policy.schedule(4).edges
    assert CalibratedExit.from_errors(policy.errors, edges, budget=0.5).schedule(4).depths == policy.schedule(4).depths
    tighter = CalibratedExit.from_errors(policy.errors, edges, budget=0.25)
    assert tighter.flop_fraction(4) <= 0.25
    with pytest.raises(ShapeError, match="errors must be"):
        CalibratedExit.from_errors(policy.errors[:, :1], edges, budget=0.5)
