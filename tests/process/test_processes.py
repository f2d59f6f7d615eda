"""Closed forms of every process: marginals, SDE coefficients, log-SNR, conversions."""

from __future__ import annotations

import inspect
import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import genflow as gf
from genflow.errors import ComponentError, ConfigError, ParameterizationError, ShapeError, TimeRangeError
from tests.strategies import batch_sizes, event_shapes, gaussian_processes, inner_times

PROCS = gaussian_processes()
NAMES = sorted(PROCS)


def _t(values):
    return torch.as_tensor(values, dtype=torch.float64)


@pytest.mark.parametrize("name", NAMES)
@given(t=inner_times)
def test_derivatives_match_autograd(name, t):
    proc = PROCS[name]
    tt = _t(t).requires_grad_(True)
    (dla,) = torch.autograd.grad(torch.log(proc.alpha(tt)) + 0.0 * tt, tt)  # VE: alpha constant
    (ds2,) = torch.autograd.grad(proc.sigma(tt) ** 2, tt)
    with torch.no_grad():
        assert float(proc.log_alpha_derivative(tt)) == pytest.approx(float(dla), rel=1e-6, abs=1e-9)
        assert float(proc.sigma2_derivative(tt)) == pytest.approx(float(ds2), rel=1e-6, abs=1e-9)


@pytest.mark.parametrize("name", NAMES)
def test_log_snr_decreasing_and_inverse(name):
    proc = PROCS[name]
    ts = torch.linspace(max(proc.t_min, 0.01), min(proc.t_max, 0.99), 50, dtype=torch.float64)
    lam = proc.log_snr(ts)
    assert bool((lam[1:] < lam[:-1]).all())
    assert torch.allclose(lam, torch.log(proc.alpha(ts) / proc.sigma(ts)), atol=1e-9)
    assert torch.allclose(proc.t_from_log_snr(lam), ts, atol=1e-8)


def test_schedule_closed_forms():
    t = torch.linspace(0.0, 1.0, 11, dtype=torch.float64)
    vp = gf.VPProcess(beta_min=0.1, beta_max=20.0)
    integral = 0.1 * t + 0.5 * 19.9 * t**2
    assert torch.allclose(vp.alpha(t), torch.exp(-0.5 * integral))
    assert torch.allclose(vp.alpha(t) ** 2 + vp.sigma(t) ** 2, torch.ones_like(t))
    assert torch.allclose(vp.diffusion_squared(t), 0.1 + 19.9 * t)
    subvp = gf.SubVPProcess()
    assert torch.allclose(subvp.sigma(t), 1 - torch.exp(-integral))
    assert torch.allclose(subvp.diffusion_squared(t), (0.1 + 19.9 * t) * (1 - torch.exp(-2 * integral)))
    ve = gf.VEProcess(sigma_min=0.01, sigma_max=50.0)
    assert torch.allclose(ve.sigma(t), 0.01 * 5000.0**t)
    assert torch.allclose(ve.alpha(t), torch.ones_like(t))
    li = gf.LinearInterpolant()
    assert torch.allclose(li.alpha(t), 1 - t) and torch.allclose(li.sigma(t), t)
    cos = gf.VPProcess(schedule="cosine")
    s = 0.008
    expected = torch.cos((t[:-1] + s) / (1 + s) * math.pi / 2) ** 2 / math.cos(s / (1 + s) * math.pi / 2) ** 2
    assert torch.allclose(cos.alpha(t[:-1]) ** 2, expected)


def test_discrete_vp_matches_cumulative_product():
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    vp = gf.VPProcess.from_betas(betas)
    n = torch.tensor([1, 10, 500, 1000])
    alpha_bar = torch.cumprod(1 - betas, 0)[n - 1]
    assert torch.allclose(vp.alpha(n.double() / 1000.0) ** 2, alpha_bar, rtol=1e-10)
    assert vp.t_min == pytest.approx(1e-3)


@pytest.mark.parametrize("name", [n for n in NAMES if n != "linear_interpolant"])
def test_forward_sde_reproduces_marginals(name):
    """Euler-Maruyama on the forward SDE moves the t_a marginal to the t_b marginal."""
    proc = PROCS[name]
    gen = torch.Generator().manual_seed(0)
    x0 = torch.full((20000, 1), 1.5, dtype=torch.float64)
    t_a, t_b = max(proc.t_min, 0.05), 0.6
    mean_a, std_a = proc.marginal(x0, t_a)
    x = mean_a + std_a * torch.randn(x0.shape, generator=gen, dtype=torch.float64)
    sol = gf.SOLVERS.create("euler_maruyama").solve(
        proc.forward_sde(), x, torch.linspace(t_a, t_b, 400, dtype=torch.float64), generator=gen
    )
    mean_b, std_b = proc.marginal(x0, t_b)
    std_b = float(std_b.flatten()[0])
    assert float(sol.x.mean()) == pytest.approx(float(mean_b[0]), abs=4 * std_b / math.sqrt(20000) + 0.01 * std_b)
    assert float(sol.x.std()) == pytest.approx(std_b, rel=0.03)


def _discrete_log_alpha(t: float) -> float:
    """log alpha of the 1000 linear DDPM betas of ``gaussian_processes()`` (float32 ``linspace``, as built there):
    log of sqrt(prod(1 - beta)), linear in t between steps n/N."""
    betas = torch.linspace(1e-4, 0.02, 1000).double().numpy()
    knots = np.concatenate([[0.0], 0.5 * np.cumsum(np.log1p(-betas))])
    return float(np.interp(t, np.arange(1001) / 1000.0, knots))


def _vp_integral(t: float) -> float:
    return 0.1 * t + 0.5 * 19.9 * t**2  # int_0^t beta for beta in [0.1, 20]


def _cosine_alpha(t: float) -> float:
    f = lambda u: math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731 (Nichol & Dhariwal eq. 17)
    return math.sqrt(f(t) / f(0.0))


# (alpha(t), sigma(t)) written from the papers, independently of genflow's code
CLOSED_FORMS = {
    "vp": lambda t: (math.exp(-0.5 * _vp_integral(t)), math.sqrt(1.0 - math.exp(-_vp_integral(t)))),
    "vp_cosine": lambda t: (_cosine_alpha(t), math.sqrt(1.0 - _cosine_alpha(t) ** 2)),
    "vp_discrete": lambda t: (math.exp(_discrete_log_alpha(t)), math.sqrt(1.0 - math.exp(2 * _discrete_log_alpha(t)))),
    "ve": lambda t: (1.0, 0.01 * 5000.0**t),
    "subvp": lambda t: (math.exp(-0.5 * _vp_integral(t)), 1.0 - math.exp(-_vp_integral(t))),
    "linear_interpolant": lambda t: (1.0 - t, t),
}


def test_every_gaussian_process_has_a_closed_form_oracle():
    assert set(CLOSED_FORMS) == set(NAMES), "add the new process's closed form to CLOSED_FORMS"


@pytest.mark.parametrize("name", sorted(CLOSED_FORMS))
@given(shape=event_shapes, batch=batch_sizes, t=inner_times)
def test_sample_and_marginal_match_the_closed_form(name, shape, batch, t):
    proc = PROCS[name]
    alpha, sigma = CLOSED_FORMS[name](t)
    gen = torch.Generator().manual_seed(batch)
    x0 = torch.randn(batch, *shape, generator=gen, dtype=torch.float64)
    noise = torch.randn(x0.shape, generator=gen, dtype=torch.float64)
    expected = alpha * x0 + sigma * noise
    assert torch.allclose(proc.sample(x0, t, noise), expected, rtol=1e-7, atol=1e-9)
    mean, std = proc.marginal(x0, torch.full((batch,), t, dtype=torch.float64))  # per-sample times
    assert mean.shape == x0.shape and (mean + std * noise).shape == x0.shape
    assert torch.allclose(mean, alpha * x0, rtol=1e-7, atol=1e-9)
    assert torch.allclose(std, torch.full_like(std, sigma), rtol=1e-7, atol=1e-9)


def test_brownian_bridge_sample_matches_the_closed_form():
    bb = gf.BrownianBridge(beta=0.3)
    gen = torch.Generator().manual_seed(0)
    x0, x1, noise = (torch.randn(5, 2, 3, generator=gen, dtype=torch.float64) for _ in range(3))
    t = torch.tensor([0.0, 0.2, 0.5, 0.9, 1.0], dtype=torch.float64)
    tb = t.reshape(5, 1, 1)
    expected = (1 - tb) * x0 + tb * x1 + (0.3 * tb * (1 - tb)).sqrt() * noise  # I2SB eq. (11)
    assert torch.allclose(bb.sample(x0, t, noise, x1=x1), expected, atol=1e-12)


PARAMS = gf.PARAMETERIZATIONS


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("source", PARAMS)
@pytest.mark.parametrize("target", PARAMS)
def test_conversions_are_mutual_inverses(name, source, target):
    proc = PROCS[name]
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(6, 3, 2, generator=gen, dtype=torch.float64)
    pred = torch.randn(6, 3, 2, generator=gen, dtype=torch.float64)
    t = torch.linspace(0.1, 0.9, 6, dtype=torch.float64)
    there = proc.convert(pred, source, target, x, t)
    back = proc.convert(there, target, source, x, t)
    assert torch.allclose(back, pred, atol=1e-8, rtol=1e-8)


@pytest.mark.parametrize("name", NAMES)
def test_velocity_is_probability_flow(name):
    """The velocity parameterisation equals the probability-flow ODE f x - g^2 score / 2."""
    proc = PROCS[name]
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(5, 4, generator=gen, dtype=torch.float64)
    eps = torch.randn(5, 4, generator=gen, dtype=torch.float64)
    t = torch.linspace(0.1, 0.9, 5, dtype=torch.float64)
    score = proc.convert(eps, "eps", "score", x, t)
    ode = proc.probability_flow(lambda x_, t_: score)
    assert torch.allclose(proc.convert(eps, "eps", "velocity", x, t), ode(x, t), atol=1e-8)
    # the conditional path's velocity: d/dt (alpha x0 + sigma eps)
    x0 = torch.randn(5, 4, generator=gen, dtype=torch.float64)
    tt = t.clone().requires_grad_(True)
    xt = gf.process.broadcast_time(proc.alpha(tt), x0) * x0 + gf.process.broadcast_time(proc.sigma(tt), x0) * eps
    (dxdt,) = torch.autograd.grad(xt.sum(dim=1), tt, grad_outputs=torch.ones(5, dtype=torch.float64))
    xt = xt.detach()
    u = proc.from_x0_eps(x0, eps, "velocity", xt, t)
    assert torch.allclose(u.sum(dim=1), dxdt, atol=1e-8)


def test_posterior_matches_forward_marginals():
    proc = gf.VPProcess()
    gen = torch.Generator().manual_seed(3)
    x0 = torch.full((40000, 1), 0.7, dtype=torch.float64)
    t, s = torch.full((40000,), 0.6, dtype=torch.float64), torch.full((40000,), 0.3, dtype=torch.float64)
    mean_t, std_t = proc.marginal(x0, t)
    xt = mean_t + std_t * torch.randn(x0.shape, generator=gen, dtype=torch.float64)
    mean, std = proc.posterior(x0, xt, t, s)
    xs = mean + std * torch.randn(x0.shape, generator=gen, dtype=torch.float64)
    mean_s, std_s = proc.marginal(x0, s)
    assert float(xs.mean()) == pytest.approx(float(mean_s[0]), abs=0.01)
    assert float(xs.std()) == pytest.approx(float(std_s[0]), rel=0.02)


def test_brownian_bridge():
    bb = gf.BrownianBridge(beta=0.5)
    gen = torch.Generator().manual_seed(4)
    x0 = torch.randn(30000, 2, generator=gen, dtype=torch.float64)
    x1 = x0 + 3.0
    mean, std = bb.marginal(x0, 0.0, x1=x1)
    assert torch.allclose(mean, x0) and float(std.max()) == 0.0
    mean, std = bb.marginal(x0, 1.0, x1=x1)
    assert torch.allclose(mean, x1) and float(std.max()) == 0.0
    # posterior consistency: x_t ~ q(.|x0,x1), then x_s ~ q(x_s|x0,x_t) has the bridge marginal at s
    xt = bb.sample(x0, 0.8, torch.randn(x0.shape, generator=gen, dtype=torch.float64), x1=x1)
    mean, std = bb.posterior(x0, xt, 0.8, 0.3)
    xs = mean + std * torch.randn(x0.shape, generator=gen, dtype=torch.float64)
    m_s, s_s = bb.marginal(x0, 0.3, x1=x1)
    resid = (xs - m_s) / s_s
    assert float(resid.mean()) == pytest.approx(0.0, abs=0.03)
    assert float(resid.std()) == pytest.approx(1.0, abs=0.03)
    eps = bb.eps_from_x0(xt, x0, 0.8)
    assert torch.allclose(bb.x0_from_eps(xt, eps, 0.8), x0)
    with pytest.raises(ComponentError, match="x1"):
        bb.marginal(x0, 0.5)
    with pytest.raises(ShapeError):
        bb.marginal(x0, 0.5, x1=x1[:, :1])


@pytest.mark.parametrize("name", gf.PROCESSES.names())
def test_config_round_trip(name):
    proc = gf.PROCESSES.create(name)
    clone = gf.PROCESSES.from_config(json.loads(json.dumps(proc.to_config())))
    assert type(clone) is type(proc)
    x0 = torch.randn(4, 3, dtype=torch.float64)
    kw = {"x1": torch.zeros_like(x0)} if name == "brownian_bridge" else {}
    for a, b in zip(proc.marginal(x0, 0.4, **kw), clone.marginal(x0, 0.4, **kw), strict=True):
        assert torch.equal(a, b)


def test_discrete_config_round_trip():
    proc = gf.VPProcess.from_betas(torch.linspace(1e-4, 0.02, 50))
    clone = gf.PROCESSES.from_config(json.loads(json.dumps(proc.to_config())))
    t = torch.linspace(0, 1, 7, dtype=torch.float64)
    assert torch.equal(proc.alpha(t), clone.alpha(t))


def test_bad_inputs():
    vp = gf.VPProcess()
    with pytest.raises(ShapeError, match=r"\(3,\)"):
        vp.marginal(torch.zeros(3, 2), torch.zeros(4))
    with pytest.raises(ConfigError, match="schedule"):
        gf.VPProcess(schedule="sigmoid")
    with pytest.raises(ConfigError, match="beta_min"):
        gf.VPProcess(beta_min=5.0, beta_max=1.0)
    with pytest.raises(ConfigError, match="betas"):
        gf.VPProcess.from_betas([0.5, 1.5])
    with pytest.raises(ParameterizationError, match="eps, x0, v, score, velocity"):
        vp.convert(torch.zeros(2, 2), "noise", "x0", torch.zeros(2, 2), torch.full((2,), 0.5))
    with pytest.raises(ComponentError):
        vp.marginal(torch.zeros(2, 2), 0.5, x1=torch.zeros(2, 2))
    with pytest.raises(TypeError, match="accepted arguments: sigma_min, sigma_max"):
        gf.VEProcess(sigma=3.0)


@given(st.floats(-8.0, 8.0))
def test_vp_linear_closed_form_inverse(lam):
    vp = gf.VPProcess()
    t = vp.t_from_log_snr(torch.tensor(lam, dtype=torch.float64))
    if 0.0 < float(t) <= 1.0:
        assert float(vp.log_snr(t)) == pytest.approx(lam, abs=1e-8)


# ---------------------------------------------------------------- times outside [0, 1]
_X = torch.linspace(-1.0, 1.0, 6, dtype=torch.float64).reshape(3, 2)
_OK = torch.full((3,), 0.4, dtype=torch.float64)


def _bridge_kw(proc):
    return {"x1": _X + 1.0} if isinstance(proc, gf.BrownianBridge) else {}


# How to call each public method that takes a time; ``t`` / ``s`` are the times under test.
_CALLS = {
    "marginal": lambda p, t, s: p.marginal(_X, t, **_bridge_kw(p)),
    "sample": lambda p, t, s: p.sample(_X, t, torch.zeros_like(_X), **_bridge_kw(p)),
    "prior": lambda p, t, s: p.prior((3, 2), torch.Generator(), t=t[1] if torch.is_tensor(t) and t.ndim else t),
    "posterior": lambda p, t, s: p.posterior(_X, _X, t, s),
    "alpha": lambda p, t, s: p.alpha(t),
    "sigma": lambda p, t, s: p.sigma(t),
    "log_alpha_derivative": lambda p, t, s: p.log_alpha_derivative(t),
    "sigma2_derivative": lambda p, t, s: p.sigma2_derivative(t),
    "diffusion_squared": lambda p, t, s: p.diffusion_squared(t),
    "log_snr": lambda p, t, s: p.log_snr(t),
    "to_x0_eps": lambda p, t, s: p.to_x0_eps(_X, "eps", _X, t),
    "from_x0_eps": lambda p, t, s: p.from_x0_eps(_X, _X, "v", _X, t),
    "convert": lambda p, t, s: p.convert(_X, "eps", "velocity", _X, t),
    "x0_from_eps": lambda p, t, s: p.x0_from_eps(_X, _X, t),
    "eps_from_x0": lambda p, t, s: p.eps_from_x0(_X, _X, t),
}
_FIELD_CALLS = {  # the SDE and ODE objects a Gaussian process builds
    "forward_sde().drift": lambda p, t: p.forward_sde().drift(_X, t),
    "forward_sde().diffusion": lambda p, t: p.forward_sde().diffusion(_X, t),
    "reverse_sde().drift": lambda p, t: p.reverse_sde(lambda x, t_: -x).drift(_X, t),
    "probability_flow()": lambda p, t: p.probability_flow(lambda x, t_: -x)(_X, t),
}
_BAD_TIMES = [1.5, -0.25, torch.tensor([0.5, 1.0 + 1e-6, 0.2], dtype=torch.float64),
              torch.tensor([0.5, float("nan"), 0.2], dtype=torch.float64), torch.tensor(-1e-9)]  # fmt: skip


def _all_processes():
    procs = dict(gaussian_processes())
    procs.update({n: gf.PROCESSES.create(n) for n in gf.PROCESSES.names() if n not in procs})
    return procs


ALL_PROCS = _all_processes()


def _timed_methods(proc):
    """Every public method of ``proc`` with a parameter named t or s (found by signature, so none is missed)."""
    found = []
    for attr in dir(proc):
        fn = getattr(proc, attr, None)
        if attr.startswith("_") or not inspect.ismethod(fn):
            continue
        if {"t", "s"} & set(inspect.signature(fn).parameters):
            found.append(attr)
    return found


@pytest.mark.parametrize("name", sorted(ALL_PROCS))
def test_every_public_method_refuses_times_outside_0_1(name):
    proc = ALL_PROCS[name]
    methods = _timed_methods(proc)
    assert set(methods) <= set(_CALLS), f"add a call for {sorted(set(methods) - set(_CALLS))} to this test"
    assert {"marginal", "sample"} <= set(methods)
    for method in methods:
        call = _CALLS[method]
        call(proc, _OK, _OK * 0.5)  # in range: no error
        for bad in _BAD_TIMES:
            with pytest.raises(TimeRangeError, match=r"\[0, 1\]"):
                call(proc, bad, _OK * 0.5)
            if method == "posterior":
                with pytest.raises(TimeRangeError, match="s must"):
                    call(proc, _OK, bad)
    if isinstance(proc, gf.GaussianProcess):
        for what, call in _FIELD_CALLS.items():
            call(proc, _OK)
            with pytest.raises(TimeRangeError):
                call(proc, torch.tensor(1.5, dtype=torch.float64))
            assert what


def test_the_issue_example_and_the_end_points():
    x = torch.zeros(2, 3)
    with pytest.raises(TimeRangeError, match="VPProcess.marginal: t must lie in"):
        gf.VPProcess().marginal(x, torch.tensor(1.5))
    for t in (0.0, 1.0, torch.tensor([0.0, 1.0])):  # both ends are inside the domain
        gf.VPProcess().marginal(x, t)
