"""DiffusionPurifier: closed form on a Gaussian, determinism, gradients through the Sampler, modes, errors."""

from __future__ import annotations

import math

import pytest
import torch

from genflow.errors import ConfigError
from genflow.purify import DiffusionPurifier
from tests.purify.helpers import VE, gen, images, point_score, tiny_ncsn
from tests.purify.test_score_purifier import _directional_check


def test_probability_flow_purification_matches_the_gaussian_closed_form():
    """N(c, s0^2 I) under VE: the PF-ODE from sigma* to sigma_end scales x - c by sqrt((s_end^2 + s0^2) /
    (s*^2 + s0^2)) and the final x0 prediction by s0^2 / (s_end^2 + s0^2)."""
    c, s0, t_star = 0.5, 0.1, 0.5
    purifier = DiffusionPurifier(point_score(c, s0), solver="rk4", t_star=t_star, steps=200, grid="uniform")
    x = images()
    out = purifier.purify(x, gen(2))
    s_star, s_end = float(VE.sigma(torch.tensor(t_star))), VE.sigma_min
    noised = x + s_star * torch.randn(x.shape, generator=gen(2), dtype=x.dtype)
    ode = c + (noised - c) * math.sqrt((s_end**2 + s0**2) / (s_star**2 + s0**2))
    expected = (c + (ode - c) * s0**2 / (s_end**2 + s0**2)).clamp(0, 1)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)
    assert purifier.last_cost.evaluations == (4 * 200 + 1) * len(x)


def test_deterministic_given_the_generator_and_blind_to_the_global_rng():
    purifier = DiffusionPurifier(tiny_ncsn(), t_star=0.3, steps=4)
    x = images()
    torch.manual_seed(0)
    a = purifier.purify(x, gen(7))
    torch.manual_seed(99)
    state = torch.get_rng_state()
    assert torch.equal(a, purifier.purify(x, gen(7)))
    assert torch.equal(state, torch.get_rng_state())
    assert not torch.equal(a, purifier.purify(x, gen(8)))


@pytest.mark.parametrize("solver", ["euler_maruyama", "heun"])
def test_full_gradient_through_the_sampler_matches_finite_differences(solver):
    _directional_check(DiffusionPurifier(tiny_ncsn(), solver=solver, t_star=0.2, steps=3, denoise_final=False),
                       images())  # fmt: skip


def test_checkpointing_gives_the_same_gradient():
    x = images()
    grads = []
    for checkpoint in (False, True):
        xi = x.clone().requires_grad_(True)
        purifier = DiffusionPurifier(tiny_ncsn(), t_star=0.2, steps=3, checkpoint=checkpoint)
        purifier.purify(xi, gen(1)).square().sum().backward()
        grads.append(xi.grad)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-10, atol=1e-12)


def test_bpda_and_surrogate_modes():
    x = images().requires_grad_(True)
    bpda = DiffusionPurifier(tiny_ncsn(), t_star=0.2, steps=3, gradient_mode="bpda")
    bpda.purify(x, gen()).sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))
    surrogate = DiffusionPurifier(tiny_ncsn(), t_star=0.2, steps=9, surrogate_steps=2, gradient_mode="surrogate")
    surrogate.purify(x, gen())
    assert surrogate.last_cost.evaluations == (2 + 1) * len(x)  # euler_maruyama: a call a step, + the final x0


def test_bad_arguments_raise_config_errors():
    with pytest.raises(ConfigError, match="t_star"):
        DiffusionPurifier(tiny_ncsn(), t_star=1.5)
    with pytest.raises(ConfigError, match="t_star"):
        DiffusionPurifier(tiny_ncsn(), t_star=0.0)
    with pytest.raises(ConfigError, match="steps"):
        DiffusionPurifier(tiny_ncsn(), steps=0)
