"""Every registered ODE solver against closed forms and its declared order."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given

import genflow as gf
from genflow.errors import (
    ComponentError,
    ConfigError,
    NonFiniteError,
    StepLimitError,
    ToleranceError,
    UnknownArgumentError,
)
from genflow.testing import LinearODE
from tests.strategies import ADAPTIVE_ODE_SOLVERS, FIXED_ODE_SOLVERS, ODE_SOLVERS, batch_sizes, dtypes, event_shapes

A = torch.tensor([[-0.5, 2.0], [-2.0, -0.5]], dtype=torch.float64)
PROBLEM = LinearODE(A)
X0 = torch.tensor([[1.0, 0.0], [0.3, -0.7], [-1.2, 0.4]], dtype=torch.float64)


def _error(solver: gf.Solver, steps: int) -> float:
    ts = torch.linspace(0.0, 1.0, steps + 1, dtype=torch.float64)
    sol = solver.solve(PROBLEM, X0, ts)
    return float((sol.x - PROBLEM.solution(X0, 0.0, 1.0)).abs().max())


@pytest.mark.parametrize("name", FIXED_ODE_SOLVERS)
def test_empirical_order_matches_declared(name):
    solver = gf.SOLVERS.create(name)
    steps = [8, 16, 32] if solver.order < 4 else [4, 8, 16]
    errors = [_error(solver, n) for n in steps]
    slope = -np.polyfit(np.log(steps), np.log(errors), 1)[0]
    assert abs(slope - solver.order) < 0.3, f"{name}: empirical order {slope:.2f}, declared {solver.order}"


@pytest.mark.parametrize("name", ADAPTIVE_ODE_SOLVERS)
def test_adaptive_error_follows_tolerance(name):
    loose = _error(gf.SOLVERS.create(name, rtol=1e-4, atol=1e-4), 4)
    tight = _error(gf.SOLVERS.create(name, rtol=1e-8, atol=1e-8), 4)
    assert tight < 1e-5
    assert tight < loose


@pytest.mark.parametrize("name", ODE_SOLVERS)
def test_exact_for_constant_and_linear_in_t_fields(name):
    solver = gf.SOLVERS.create(name)
    x0 = torch.zeros(2, 3, dtype=torch.float64)
    ts = torch.linspace(0.2, 0.9, 5, dtype=torch.float64)
    const = solver.solve(lambda x, t: torch.full_like(x, 1.5), x0, ts)
    assert torch.allclose(const.x, torch.full_like(x0, 1.5 * 0.7), atol=1e-12)
    if solver.order >= 2:  # dx/dt = 2 t has the quadratic solution t^2: exact for order >= 2
        lin = solver.solve(lambda x, t: 2.0 * t * torch.ones_like(x), x0, ts)
        assert torch.allclose(lin.x, torch.full_like(x0, 0.9**2 - 0.2**2), atol=1e-10)


@pytest.mark.parametrize("name", ODE_SOLVERS)
def test_time_reversal_returns_to_start(name):
    solver = gf.SOLVERS.create(name) if name in FIXED_ODE_SOLVERS else gf.SOLVERS.create(name, rtol=1e-8, atol=1e-8)
    ts = torch.linspace(0.0, 1.0, 65, dtype=torch.float64)
    forward = solver.solve(PROBLEM, X0, ts)
    back = solver.solve(PROBLEM, forward.x, ts.flip(0))
    bound = 20 * (1 / 64) ** solver.order if name in FIXED_ODE_SOLVERS else 1e-5
    assert float((back.x - X0).abs().max()) < bound


@pytest.mark.parametrize("name", ODE_SOLVERS)
def test_one_point_grid_returns_input(name):
    sol = gf.SOLVERS.create(name).solve(PROBLEM, X0, torch.tensor([0.3]))
    assert torch.equal(sol.x, X0) and sol.nfe == 0


@pytest.mark.parametrize("name", FIXED_ODE_SOLVERS)
def test_nfe_counts_every_field_call(name):
    solver = gf.SOLVERS.create(name)
    calls = []
    sol = solver.solve(lambda x, t: calls.append(1) or -x, X0, torch.linspace(1.0, 0.0, 11))
    assert sol.nfe == len(calls) == 10 * solver.nfe_per_step
    stepped = gf.SOLVERS.create(name, step_size=0.05).solve(lambda x, t: -x, X0, torch.tensor([0.0, 1.0]))
    assert stepped.nfe == 20 * solver.nfe_per_step


@pytest.mark.parametrize("name", ODE_SOLVERS)
def test_field_never_sees_time_outside_grid(name):
    seen = []

    def field(x, t):
        seen.append(float(t))
        return -3.0 * x

    gf.SOLVERS.create(name).solve(field, X0, torch.linspace(1.0, 0.0, 4, dtype=torch.float64))
    assert 0.0 <= min(seen) and max(seen) <= 1.0


@pytest.mark.parametrize("name", FIXED_ODE_SOLVERS)
@given(shape=event_shapes, batch=batch_sizes, dtype=dtypes)
def test_any_event_shape_and_dtype(name, shape, batch, dtype):
    x0 = torch.randn(batch, *shape, dtype=dtype)
    sol = gf.SOLVERS.create(name).solve(lambda x, t: -x, x0, torch.linspace(0.0, 1.0, 41), return_trajectory=True)
    assert sol.x.shape == x0.shape and sol.x.dtype == dtype
    assert sol.trajectory.shape == (41, batch, *shape)
    tol = 1e-2 if gf.SOLVERS.get(name).order == 1 else 1e-4  # 40 steps
    assert torch.allclose(sol.x, x0 * math.exp(-1.0), atol=tol, rtol=tol)


def test_gradients_flow_through_solve():
    x0 = X0.clone().requires_grad_(True)
    sol = gf.SOLVERS.create("dopri5", rtol=1e-10, atol=1e-10).solve(PROBLEM, x0, torch.tensor([0.0, 1.0]))
    sol.x.sum().backward()
    expected = torch.ones_like(X0) @ torch.linalg.matrix_exp(A)  # d sum(x0 E^T) / d x0
    assert torch.allclose(x0.grad, expected, atol=1e-7)


@pytest.mark.parametrize("name", ["rk4", "dopri5"])
def test_adjoint_agrees_with_backprop(name):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3)).double()

    class Field(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, x, t):
            return self.net(x)

    field = Field()
    x0 = torch.randn(4, 3, dtype=torch.float64)
    ts = torch.linspace(0.0, 1.0, 33, dtype=torch.float64)
    grads = []
    for adjoint in (False, True):
        kw = {} if name == "rk4" else {"rtol": 1e-10, "atol": 1e-10}
        x = x0.clone().requires_grad_(True)
        field.zero_grad()
        sol = gf.SOLVERS.create(name, adjoint=adjoint, **kw).solve(field, x, ts)
        (sol.x**2).sum().backward()
        grads.append([x.grad.clone()] + [p.grad.clone() for p in field.parameters()])
    for direct, adj in zip(*grads, strict=True):
        assert torch.allclose(direct, adj, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ODE_SOLVERS)
def test_nan_mid_solve_reports_time(name):
    def field(x, t):
        return torch.where(t < 0.5, torch.full_like(x, float("nan")), -x)

    with pytest.raises(NonFiniteError) as info:
        gf.SOLVERS.create(name).solve(field, X0, torch.linspace(1.0, 0.0, 5, dtype=torch.float64))
    assert "t=" in str(info.value)
    assert info.value.time is not None and 0.0 <= info.value.time <= 0.75


@pytest.mark.parametrize("name", ODE_SOLVERS)
def test_config_round_trip_gives_identical_outputs(name):
    solver = gf.SOLVERS.create(name)
    clone = gf.SOLVERS.from_config(json.loads(json.dumps(solver.to_config())))
    ts = torch.linspace(0.0, 1.0, 9, dtype=torch.float64)
    assert torch.equal(solver.solve(PROBLEM, X0, ts).x, clone.solve(PROBLEM, X0, ts).x)


def test_adjoint_with_a_plain_function_field_is_refused():
    lin = torch.nn.Linear(2, 2).double()
    x0 = torch.ones(3, 2, dtype=torch.float64, requires_grad=True)
    with pytest.raises(ComponentError, match="adjoint_params"):
        gf.RK4(adjoint=True).solve(lambda x, t: lin(x), x0, torch.linspace(0, 1, 5))
    sol = gf.RK4(adjoint=True).solve(lambda x, t: lin(x), x0, torch.linspace(0, 1, 5), adjoint_params=lin.parameters())
    sol.x.sum().backward()
    assert lin.weight.grad is not None


@pytest.mark.parametrize("name", ADAPTIVE_ODE_SOLVERS)
def test_tolerance_below_the_dtype_resolution_is_refused_before_any_call(name):
    calls = []

    def field(x, t):
        calls.append(1)
        return -x

    solver = gf.SOLVERS.create(name, rtol=1e-12, atol=1e-12)
    with pytest.raises(ToleranceError, match=r"rtol=1e-12.*torch.float32.*eps 1\.19e-07"):
        solver.solve(field, X0.float(), torch.linspace(1.0, 0.0, 3))
    assert calls == []
    assert solver.odeint_options(X0, torch.linspace(1.0, 0.0, 3))["rtol"] == 1e-12  # float64 resolves it


def test_adaptive_solve_stops_at_max_steps_with_the_time_reached():
    calls = []

    def stiff(x, t):  # a stiff decay: explicit error control takes thousands of tiny steps
        calls.append(float(t))
        return -5e4 * (x - torch.cos(t))

    solver = gf.Dopri5(rtol=1e-6, atol=1e-6, max_steps=50)
    with pytest.raises(StepLimitError, match="stopped at t=") as info:
        solver.solve(stiff, X0, torch.linspace(0.0, 1.0, 3, dtype=torch.float64))
    assert len(calls) == 50 * gf.Dopri5.nfe_per_step + 2  # the limit's calls, then the refused one is not made
    assert min(calls[-6:]) <= info.value.time < 1.0  # the time of the call it refused, inside the last attempt
    with pytest.raises(ConfigError, match="max_steps"):
        gf.Dopri5(max_steps=0)


def test_progress_bar_leaves_the_result_unchanged(capsys):
    ts = torch.linspace(1.0, 0.0, 5, dtype=torch.float64)
    quiet = gf.Dopri5(rtol=1e-7, atol=1e-7).solve(PROBLEM, X0, ts)
    shown = gf.Dopri5(rtol=1e-7, atol=1e-7, progress=True).solve(PROBLEM, X0, ts)
    assert torch.equal(quiet.x, shown.x) and quiet.nfe == shown.nfe
    assert "Dopri5" in capsys.readouterr().err
    assert gf.Dopri5(progress=True).to_config()["progress"] is True


def test_unknown_solve_option_is_a_typed_type_error():
    with pytest.raises(UnknownArgumentError, match=r"\['tolerance_typo'\]; accepted: \['adjoint_params'\]") as info:
        gf.RK4().solve(PROBLEM, X0, torch.linspace(0, 1, 3), tolerance_typo=1e-3)
    assert isinstance(info.value, TypeError)


def test_backend_bases_are_public_and_abstract():
    for base in (gf.TorchdiffeqSolver, gf.FixedStepODESolver, gf.AdaptiveODESolver):
        with pytest.raises(TypeError, match="abstract.*method"):
            base()

    class MyHeun3(gf.FixedStepODESolver):  # a new leaf declares the torchdiffeq method and its numerics only
        method = "heun3"
        order = 3
        nfe_per_step = 3

    steps = [8, 16, 32]
    errors = [float((MyHeun3().solve(PROBLEM, X0, torch.linspace(0.0, 1.0, n + 1, dtype=torch.float64)).x
                     - PROBLEM.solution(X0, 0.0, 1.0)).abs().max()) for n in steps]  # fmt: skip
    slope = -np.polyfit(np.log(steps), np.log(errors), 1)[0]
    assert abs(slope - MyHeun3.order) < 0.3
    ode = gf.TorchdiffeqSolver.field_from(MyHeun3(), gf.ModelDenoiser(gf.VPProcess(), None))
    assert ode.__func__ is gf.ModelDenoiser.velocity
