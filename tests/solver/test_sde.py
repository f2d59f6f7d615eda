"""Every registered SDE solver against closed forms (OU, GBM) and its declared orders."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torchsde
from hypothesis import given

import genflow as gf
from genflow.errors import ComponentError, NonFiniteError, ShapeError
from genflow.testing import GeometricBrownianMotion, LinearODE, OrnsteinUhlenbeck
from tests.strategies import SDE_SOLVERS, batch_sizes, event_shapes, seeds

GBM = GeometricBrownianMotion(mu=1.0, s=0.5)


def _brownian(paths: int, seed: int) -> torchsde.BrownianInterval:
    return torchsde.BrownianInterval(
        t0=0.0, t1=1.0, size=(paths, 1), dtype=torch.float64, entropy=seed, levy_area_approximation="space-time"
    )


def _strong_errors(name: str, steps: list[int], decreasing: bool = False) -> list[float]:
    """Mean |X_N - X_exact| over shared Brownian paths, for GBM on [0, 1] (or run from t=1 to 0)."""
    paths = 1000
    bm = _brownian(paths, seed=123)
    x0 = torch.ones(paths, 1, dtype=torch.float64)
    w = bm(0.0, 1.0)
    if decreasing:  # in u = 1 - t the SDE dX = mu X dt + s X dW becomes dX = -mu X du + s X dW_u
        exact = x0 * torch.exp((-GBM.mu - 0.5 * GBM.s**2) + GBM.s * w)
    else:
        exact = GBM.exact(x0, 1.0, w)
    errors = []
    for n in steps:
        ts = torch.linspace(0.0, 1.0, n + 1, dtype=torch.float64)
        ts = ts.flip(0) if decreasing else ts
        sol = gf.SOLVERS.create(name).solve(GBM, x0, ts, brownian=bm)
        errors.append(float((sol.x.detach() - exact).abs().mean()))
    return errors


def _slope(steps, errors):
    return -np.polyfit(np.log(steps), np.log(errors), 1)[0]


@pytest.mark.parametrize("name", SDE_SOLVERS)
@pytest.mark.parametrize("decreasing", [False, True])
def test_strong_order_on_gbm(name, decreasing):
    solver = gf.SOLVERS.get(name)
    steps = [16, 32, 64, 128]
    slope = _slope(steps, _strong_errors(name, steps, decreasing))
    assert slope > solver.strong_order - 0.2, f"{name}: strong order {slope:.2f}, declared {solver.strong_order}"
    if name in ("euler_maruyama", "milstein"):  # exactly the declared order on multiplicative noise
        assert slope < solver.strong_order + 0.3


@pytest.mark.parametrize("name", [n for n in SDE_SOLVERS if gf.SOLVERS.get(n).weak_order == 1.0])
def test_weak_order_on_gbm_mean(name):
    """Weak error of E[X_1] against the closed form x0 e^mu (shared paths reduce the Monte Carlo noise)."""
    paths = 20000
    bm = _brownian(paths, seed=7)
    x0 = torch.ones(paths, 1, dtype=torch.float64)
    exact_path = GBM.exact(x0, 1.0, bm(0.0, 1.0))
    exact_mean = GBM.moments(x0[:1], 1.0)[0].item()
    steps, errors = [4, 8, 16, 32], []
    for n in steps:
        sol = gf.SOLVERS.create(name).solve(GBM, x0, torch.linspace(0.0, 1.0, n + 1, dtype=torch.float64), brownian=bm)
        # E[X_N] - E[X] estimated as mean(X_N - X(W)) + (mean(X(W)) - E[X]) with the same paths
        errors.append(abs(float((sol.x.detach() - exact_path).mean()) + float(exact_path.mean()) - exact_mean))
    slope = _slope(steps, errors)
    assert 0.7 < slope < 1.4, f"{name}: weak order {slope:.2f}"


@pytest.mark.parametrize("name", SDE_SOLVERS)
def test_ornstein_uhlenbeck_moments(name):
    ou = OrnsteinUhlenbeck(theta=1.5, mu=0.5, s=0.8)
    x0 = torch.full((8000, 1), -1.0, dtype=torch.float64)
    ts = torch.tensor([0.0, 0.05, 0.15, 0.3, 0.5, 0.75, 1.0], dtype=torch.float64)  # non-uniform
    ts = torch.cat([ts[:-1] + (ts[1:] - ts[:-1]) * f for f in torch.linspace(0, 1, 9)[:-1]]).sort().values
    ts = torch.cat([ts, torch.tensor([1.0], dtype=torch.float64)])
    sol = gf.SOLVERS.create(name).solve(ou, x0, ts, generator=torch.Generator().manual_seed(0))
    mean, var = ou.moments(x0[:1], 1.0)
    assert float(sol.x.mean()) == pytest.approx(float(mean), abs=0.03)
    assert float(sol.x.var()) == pytest.approx(float(var), rel=0.06)


@pytest.mark.parametrize("name", SDE_SOLVERS)
def test_zero_diffusion_reduces_to_ode(name):
    field = LinearODE(torch.tensor([[-0.5, 2.0], [-2.0, -0.5]], dtype=torch.float64))

    class Deterministic:
        additive_noise = False  # exercise the Ito-Stratonovich correction path too

        def drift(self, x, t):
            return field(x, t)

        def diffusion(self, x, t):
            return 0.0 * x

    x0 = torch.tensor([[1.0, 0.0], [0.2, 0.5]], dtype=torch.float64)
    ts = torch.linspace(0.0, 1.0, 65, dtype=torch.float64)
    solver = gf.SOLVERS.create(name)
    a = solver.solve(Deterministic(), x0, ts, generator=torch.Generator().manual_seed(0)).x
    b = solver.solve(Deterministic(), x0, ts, generator=torch.Generator().manual_seed(1)).x
    assert torch.equal(a, b)
    if solver.ode_twin is not None:
        twin = gf.SOLVERS.create(solver.ode_twin).solve(field, x0, ts).x
        assert torch.allclose(a, twin, atol=1e-12)
    assert float((a.detach() - field.solution(x0, 0.0, 1.0)).abs().max()) < 0.1


@pytest.mark.parametrize("name", SDE_SOLVERS)
@given(seed=seeds, shape=event_shapes, batch=batch_sizes)
def test_same_generator_same_path_any_shape(name, seed, shape, batch):
    ou = OrnsteinUhlenbeck()
    x0 = torch.randn(batch, *shape, dtype=torch.float64)
    ts = torch.tensor([1.0, 0.7, 0.2, 0.0], dtype=torch.float64)
    solver = gf.SOLVERS.create(name)
    a = solver.solve(ou, x0, ts, generator=torch.Generator().manual_seed(seed), return_trajectory=True)
    b = solver.solve(ou, x0, ts, generator=torch.Generator().manual_seed(seed))
    c = solver.solve(ou, x0, ts, generator=torch.Generator().manual_seed(seed + 1))
    assert a.x.shape == x0.shape and a.trajectory.shape == (4, batch, *shape)
    assert torch.equal(a.x, b.x)
    assert not torch.equal(a.x, c.x)


@pytest.mark.parametrize("name", SDE_SOLVERS)
def test_nfe_counts_drift_calls(name):
    calls = []

    class Counting(OrnsteinUhlenbeck):
        def drift(self, x, t):
            calls.append(1)
            return super().drift(x, t)

    solver = gf.SOLVERS.create(name)
    for ts, uniform in (
        (torch.linspace(1.0, 0.0, 101, dtype=torch.float64), True),
        (torch.linspace(1.0, 0.0, 101), True),
        (torch.tensor([1.0, 0.6, 0.3, 0.1, 0.0]), False),
    ):
        calls.clear()
        sol = solver.solve(
            Counting(), torch.zeros(3, 2, dtype=ts.dtype), ts, generator=torch.Generator().manual_seed(0)
        )
        n = ts.numel() - 1
        assert sol.nfe == len(calls)
        if name == "reversible_heun":  # one call per step plus one per torchsde call
            assert sol.nfe == (n + 1 if uniform else 2 * n)
        else:
            assert sol.nfe == n * solver.nfe_per_step


def test_bad_sde_inputs():
    solver = gf.SOLVERS.create("euler_maruyama")
    with pytest.raises(ComponentError, match="drift"):
        solver.solve(lambda x, t: x, torch.zeros(2, 2), torch.linspace(0, 1, 3))

    class WrongNoise(OrnsteinUhlenbeck):
        def diffusion(self, x, t):
            return torch.ones(x.shape[0], 1)

    with pytest.raises(ShapeError, match="diagonal noise"):
        solver.solve(WrongNoise(), torch.zeros(2, 3), torch.linspace(0, 1, 3), generator=torch.Generator())

    class Exploding(OrnsteinUhlenbeck):
        def drift(self, x, t):
            return torch.where(t < 0.5, torch.full_like(x, float("inf")), x)

    with pytest.raises(NonFiniteError, match="t="):
        solver.solve(
            Exploding(), torch.zeros(2, 3), torch.linspace(1, 0, 5), generator=torch.Generator().manual_seed(0)
        )
    with pytest.raises(TypeError, match="accepted"):
        solver.solve(OrnsteinUhlenbeck(), torch.zeros(2, 3), torch.linspace(0, 1, 3), dt=0.1)


@pytest.mark.parametrize("name", SDE_SOLVERS)
def test_config_round_trip(name):
    solver = gf.SOLVERS.create(name)
    clone = gf.SOLVERS.from_config(json.loads(json.dumps(solver.to_config())))
    ts = torch.linspace(0.0, 1.0, 5)
    x0 = torch.ones(3, 2)
    a = solver.solve(OrnsteinUhlenbeck(), x0, ts, generator=torch.Generator().manual_seed(5)).x
    b = clone.solve(OrnsteinUhlenbeck(), x0, ts, generator=torch.Generator().manual_seed(5)).x
    assert torch.equal(a, b)


@pytest.mark.parametrize("name", ["euler_maruyama", "milstein"])
def test_single_call_on_a_non_uniform_grid_matches_per_interval_solves(name):
    """Start-point methods solve any grid in one torchsde call (interval = floor(s)); it must equal
    the per-interval solve that step-end methods use."""
    ts = torch.tensor([1.0, 0.8, 0.45, 0.3, 0.05, 0.0], dtype=torch.float64)
    x0 = torch.randn(16, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    one_call = gf.SOLVERS.create(name)
    per_interval = gf.SOLVERS.create(name)
    per_interval.evaluates_step_end = True  # forces one torchsde call per interval
    sde = GeometricBrownianMotion(mu=0.3, s=0.4)
    a = one_call.solve(sde, x0, ts, generator=torch.Generator().manual_seed(9))
    b = per_interval.solve(sde, x0, ts, generator=torch.Generator().manual_seed(9))
    assert torch.allclose(a.x, b.x, atol=1e-12) and a.nfe == b.nfe == 5


def test_user_brownian_must_match_the_flattened_state():
    bm = torchsde.BrownianInterval(t0=0.0, t1=1.0, size=(4, 3), dtype=torch.float64, entropy=0)
    with pytest.raises(ShapeError, match=r"\(batch, prod\(event_shape\)\) = \(4, 6\)"):
        x = torch.zeros(4, 2, 3, dtype=torch.float64)
        gf.EulerMaruyama().solve(OrnsteinUhlenbeck(), x, torch.linspace(0, 1, 3), brownian=bm)


def test_stratonovich_correction_builds_no_graph_without_grad():
    x0 = torch.ones(8, 1, dtype=torch.float64)
    with torch.no_grad():
        sol = gf.ReversibleHeun().solve(GBM, x0, torch.linspace(0, 1, 5, dtype=torch.float64),
                                        generator=torch.Generator().manual_seed(0))  # fmt: skip
    assert not sol.x.requires_grad


@pytest.mark.parametrize("name", [n for n in SDE_SOLVERS if gf.SOLVERS.get(n).weak_order > 1.0])
def test_higher_weak_order_on_gbm_second_moment(name):
    """Weak error of E[X_1^2] against the exact path's square on shared Brownian paths.

    ``mean(X_N^2 - X(W)^2)`` estimates ``E[X_N^2] - E[X^2]`` without the Monte Carlo error of
    ``mean(X(W)^2)`` itself (``E[X(W)^2]`` is exact), so errors far below ``1/sqrt(paths)`` are
    measurable. (For SRK the first moment's weak error falls to that noise floor by 16 steps.)
    """
    paths = 20000
    bm = _brownian(paths, seed=7)
    x0 = torch.ones(paths, 1, dtype=torch.float64)
    exact_sq = GBM.exact(x0, 1.0, bm(0.0, 1.0)) ** 2
    steps, errors = [4, 8, 16, 32], []
    for n in steps:
        sol = gf.SOLVERS.create(name).solve(GBM, x0, torch.linspace(0.0, 1.0, n + 1, dtype=torch.float64), brownian=bm)
        errors.append(abs(float((sol.x.detach() ** 2 - exact_sq).mean())))
    slope = _slope(steps, errors)
    declared = gf.SOLVERS.get(name).weak_order
    assert declared - 0.2 < slope < declared + 0.6, f"{name}: weak order {slope:.2f}, declared {declared}"


def test_torchsde_base_is_public_abstract_and_integrates_the_reverse_sde():
    with pytest.raises(TypeError, match="abstract.*method"):
        gf.TorchsdeSolver()

    class MyHeunSDE(gf.TorchsdeSolver):  # a new leaf: the torchsde method and its numerics only
        method = "heun"
        sde_type = "stratonovich"
        evaluates_step_end = True
        strong_order = 0.5
        weak_order = 1.0
        nfe_per_step = 2

    ou = OrnsteinUhlenbeck(theta=1.5, mu=0.5, s=0.8)
    x0 = torch.full((8000, 1), -1.0, dtype=torch.float64)
    sol = MyHeunSDE().solve(ou, x0, torch.linspace(0.0, 1.0, 41, dtype=torch.float64),
                            generator=torch.Generator().manual_seed(0))  # fmt: skip
    mean, var = ou.moments(x0[:1], 1.0)
    assert float(sol.x.mean()) == pytest.approx(float(mean), abs=0.03)
    assert float(sol.x.var()) == pytest.approx(float(var), rel=0.06)
    process = gf.VPProcess()
    sde = gf.EulerMaruyama().field_from(gf.ModelDenoiser(process, None))
    assert sde.process is process and sde.additive_noise
