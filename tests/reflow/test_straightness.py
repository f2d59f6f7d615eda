"""Straightness and chord deviation: zero for straight flows, closed forms for a rotation, typed errors."""

from __future__ import annotations

import math

import pytest
import torch

import genflow as gf
from genflow.errors import ShapeError, TimeGridError
from genflow.metrics import chord_deviation, straightness

X1 = torch.tensor([[1.0, 0.0], [0.5, -2.0], [-3.0, 1.25]], dtype=torch.float64)  # noise-side states at t = 1


def test_a_straight_constant_speed_flow_has_zero_straightness_exactly():
    c = torch.tensor([0.5, -2.0], dtype=torch.float64)

    def field(x, t):
        return c.expand_as(x)

    ts = torch.linspace(1.0, 0.0, 5, dtype=torch.float64)  # dyadic steps: the Euler solve is exact arithmetic
    sol = gf.Euler().solve(field, X1, ts, return_trajectory=True)
    assert float(straightness(field, sol.trajectory, ts)) == 0.0
    assert float(chord_deviation(sol.trajectory, ts)) == 0.0


def _rotation(w):
    J = torch.tensor([[0.0, -1.0], [1.0, 0.0]], dtype=torch.float64)

    def field(x, t):  # dx/dt = w J x: a uniform rotation, |v| = w r, along the circle of radius r
        return w * x @ J.T

    def exact(t):  # the state at time t, starting from X1 at t = 1
        a = w * (t - 1.0)
        rot = torch.tensor([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]], dtype=torch.float64)
        return X1 @ rot.T

    return field, exact


@pytest.mark.parametrize("w", [0.5, 2.0])
def test_a_rotation_has_its_closed_form_straightness(w):
    field, exact = _rotation(w)
    ts = torch.linspace(1.0, 0.0, 2001, dtype=torch.float64)
    trajectory = torch.stack([exact(float(t)) for t in ts])
    r2 = X1.pow(2).sum(1)
    # E_t |v - c|^2 = |v|^2 - |c|^2 (the mean of v over [0, 1] is the chord c): r^2 (w^2 - 4 sin^2(w / 2))
    expected = r2 * (w**2 - 4 * math.sin(w / 2) ** 2)
    torch.testing.assert_close(straightness(field, trajectory, ts, per_example=True), expected, rtol=1e-6, atol=0)
    torch.testing.assert_close(straightness(field, trajectory, ts), expected.mean(), rtol=1e-6, atol=0)
    # the arc's largest distance from its chord (at t = 1/2), over the chord length: tan(w / 4) / 2
    deviation = chord_deviation(trajectory, ts, per_example=True)
    torch.testing.assert_close(deviation, torch.full((3,), math.tan(w / 4) / 2, dtype=torch.float64), rtol=1e-6, atol=0)


def test_straightness_along_a_solver_trajectory_converges_to_the_closed_form():
    w = 1.5
    field, _ = _rotation(w)
    expected = float((X1.pow(2).sum(1) * (w**2 - 4 * math.sin(w / 2) ** 2)).mean())
    errors = []
    for steps in (16, 32):
        ts = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)
        sol = gf.RK4().solve(field, X1, ts, return_trajectory=True)
        errors.append(abs(float(straightness(field, sol.trajectory, ts)) - expected))
    assert errors[1] < errors[0] / 3.5  # the trapezoidal rule: second order
    assert errors[1] < 1e-2 * expected


def test_increasing_and_decreasing_grids_agree():
    field, exact = _rotation(1.0)
    ts = torch.linspace(0.0, 1.0, 11, dtype=torch.float64)
    trajectory = torch.stack([exact(float(t)) for t in ts])
    forward = straightness(field, trajectory, ts)
    torch.testing.assert_close(straightness(field, trajectory.flip(0), ts.flip(0)), forward)


def test_bad_inputs_raise_typed_errors():
    field, exact = _rotation(1.0)
    ts = torch.linspace(1.0, 0.0, 4, dtype=torch.float64)
    trajectory = torch.stack([exact(float(t)) for t in ts])
    with pytest.raises(ShapeError, match=r"len\(ts\)=4"):
        straightness(field, trajectory[:3], ts)
    with pytest.raises(TimeGridError, match="monotone"):
        chord_deviation(trajectory, torch.tensor([1.0, 0.5, 0.7, 0.0]))
    with pytest.raises(TimeGridError, match="at least 2"):
        chord_deviation(trajectory[:1], ts[:1])
