"""The segment-restart solvers: plain Euler/Heun with one segment, exactness, restarts with segment-aware models."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor

import genflow as gf
from genflow.errors import ComponentError
from genflow.model.base import ScoreModel
from genflow.reflow import SegmentEuler, SegmentGrid, SegmentHeun, SegmentSpec, SegmentSpecError, SegmentVelocity
from genflow.testing import LinearODE

A = torch.tensor([[-0.5, 2.0], [-2.0, -0.5]], dtype=torch.float64)
X0 = torch.tensor([[1.0, 0.0], [0.3, -0.7], [-1.2, 0.4]], dtype=torch.float64)
PAIRS = [(SegmentEuler, gf.Euler), (SegmentHeun, gf.Heun)]


class PiecewiseConstantVelocity(ScoreModel):
    """Segment-aware: velocity ``c_k`` in segment ``k`` (from ``segment=``, else from ``t``), whatever ``x``."""

    parameterization = "velocity"

    def __init__(self, segments: SegmentSpec, values: Tensor) -> None:
        super().__init__()
        self.segments, self.values = segments, values

    def forward(self, x: Tensor, t: Tensor, *, cond: Any = None, exit: Any = None, segment: Any = None) -> Tensor:
        if segment is None:
            segment = self.segments.segment_of(torch.as_tensor(t).expand(x.shape[0]))
        k = torch.as_tensor(segment).expand(x.shape[0])
        return self.values.to(x.dtype)[k]


@pytest.mark.parametrize(("segment_solver", "plain"), PAIRS)
def test_one_segment_is_the_plain_method(segment_solver, plain):
    ts = torch.linspace(1.0, 0.0, 8, dtype=torch.float64)
    field = LinearODE(A)
    ours = segment_solver(1).solve(field, X0, ts, return_trajectory=True)
    ref = plain().solve(field, X0, ts, return_trajectory=True)
    assert torch.equal(ours.x, ref.x) and torch.equal(ours.trajectory, ref.trajectory) and ours.nfe == ref.nfe


def test_one_segment_euler_equals_the_registered_euler_through_the_sampler():
    model = gf.MLPScoreNet(dim=2, hidden_size=16, depth=1, parameterization="velocity")
    proc = gf.LinearInterpolant()
    outs = [
        gf.Sampler(proc, model, solver).sample((6, 2), 5, generator=torch.Generator().manual_seed(3))
        for solver in (SegmentEuler(1), gf.SOLVERS.create("euler"))
    ]
    assert torch.equal(outs[0].samples, outs[1].samples) and outs[0].nfe == outs[1].nfe == 5


@pytest.mark.parametrize(("segment_solver", "plain"), PAIRS)
def test_restarts_leave_a_plain_field_on_the_same_grid_unchanged(segment_solver, plain):
    ts = SegmentGrid(3)(gf.LinearInterpolant(), 10)
    ours = segment_solver(3).solve(LinearODE(A), X0, ts, return_trajectory=True)
    ref = plain().solve(LinearODE(A), X0, ts, return_trajectory=True)
    torch.testing.assert_close(ours.trajectory, ref.trajectory, rtol=0, atol=1e-15)
    assert ours.nfe == ref.nfe == 10 * segment_solver.nfe_per_step


@pytest.mark.parametrize("segment_solver", [SegmentEuler, SegmentHeun])
def test_empirical_order_matches_declared(segment_solver):
    problem = LinearODE(A)
    exact = problem.solution(X0, 1.0, 0.0)
    steps = [12, 24, 48]
    errors = [
        float((segment_solver(3).solve(problem, X0, SegmentGrid(3)(gf.LinearInterpolant(), n)).x - exact).abs().max())
        for n in steps
    ]
    slope = -np.polyfit(np.log(steps), np.log(errors), 1)[0]
    assert abs(slope - segment_solver.order) < 0.3


@pytest.mark.parametrize("segment_solver", [SegmentEuler, SegmentHeun])
def test_a_constant_velocity_is_integrated_exactly_in_one_step(segment_solver):
    c = torch.tensor([0.75, -1.5], dtype=torch.float64)
    sol = segment_solver(1).solve(lambda x, t: c.expand_as(x), X0, torch.tensor([1.0, 0.0], dtype=torch.float64))
    assert torch.equal(sol.x, X0 - c) and sol.nfe == segment_solver.nfe_per_step


@pytest.mark.parametrize("segment_solver", [SegmentEuler, SegmentHeun])
@pytest.mark.parametrize("steps", [4, 7])
def test_each_segment_uses_its_own_velocity(segment_solver, steps):
    spec = SegmentSpec.uniform(4)
    values = torch.tensor([[1.0, 0.0], [0.0, 2.0], [-1.0, 0.5], [3.0, -1.0]], dtype=torch.float64)
    model = PiecewiseConstantVelocity(spec, values)
    denoiser = gf.ModelDenoiser(gf.LinearInterpolant(), model)
    solver = segment_solver(spec)
    field = solver.field_from(denoiser)
    assert isinstance(field, SegmentVelocity)
    sol = solver.solve(field, X0, SegmentGrid(spec)(gf.LinearInterpolant(), steps, dtype=torch.float64))
    expected = X0 - 0.25 * values.sum(0)  # each segment has length 1/4 and a constant velocity
    torch.testing.assert_close(sol.x, expected, rtol=0, atol=1e-12)
    assert sol.nfe == denoiser.calls == steps * segment_solver.nfe_per_step


def test_heun_needs_the_segment_named_at_a_boundary():
    # evaluated by time alone, Heun's last evaluation in a segment reads the next segment's velocity
    spec = SegmentSpec.uniform(2)
    values = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
    denoiser = gf.ModelDenoiser(gf.LinearInterpolant(), PiecewiseConstantVelocity(spec, values))
    ts = SegmentGrid(spec)(gf.LinearInterpolant(), 2, dtype=torch.float64)
    by_time = SegmentHeun(spec).solve(denoiser.velocity, X0, ts).x
    assert not torch.allclose(by_time, X0 - 0.5 * values.sum(0))


def test_grid_without_the_boundaries_is_refused():
    with pytest.raises(SegmentSpecError, match=r"must contain t=0\.5.*SegmentGrid"):
        SegmentEuler(2).solve(LinearODE(A), X0, torch.linspace(1.0, 0.0, 4, dtype=torch.float64))


def test_model_and_solver_segments_must_agree():
    model = PiecewiseConstantVelocity(SegmentSpec.uniform(2), torch.zeros(2, 2))
    solver = SegmentEuler(4)
    field = solver.field_from(gf.ModelDenoiser(gf.LinearInterpolant(), model))
    with pytest.raises(ComponentError, match="differ"):
        solver.solve(field, X0.float(), SegmentGrid(4)(gf.LinearInterpolant(), 4))


def test_declared_numerics_and_config_round_trip():
    assert (SegmentEuler.order, SegmentEuler.nfe_per_step, SegmentHeun.order, SegmentHeun.nfe_per_step) == (1, 1, 2, 2)
    assert gf.SOLVERS.get("segment_heun") is SegmentHeun
    solver = SegmentHeun(segments=[1.0, 0.7, 0.2, 0.0], step_size=0.05)
    clone = gf.SOLVERS.from_config(json.loads(json.dumps(solver.to_config())))
    ts = SegmentGrid(solver.segments)(gf.LinearInterpolant(), 6, dtype=torch.float64)
    assert torch.equal(solver.solve(LinearODE(A), X0, ts).x, clone.solve(LinearODE(A), X0, ts).x)
    with pytest.raises(SegmentSpecError):
        SegmentHeun(segments=0)
    assert math.isclose(float(ts[1]), 1.0 - 0.3 / 2)  # 6 steps, 3 segments: 2 each
