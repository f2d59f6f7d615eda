"""Objectives: the exact score minimises DSM in every parameterisation; flow matching is DSM on the interpolant."""

from __future__ import annotations

import pytest
import torch

import genflow as gf
from genflow.errors import ConfigError
from genflow.objectives import OBJECTIVES, DenoisingScoreMatching, FlowMatching
from genflow.testing import GaussianMixture, GaussianMixtureScore

MIXTURE = GaussianMixture.isotropic([0.3, 0.7], torch.tensor([[-2.0, 0.0], [1.5, 1.0]]), [0.4, 0.6])


class Shifted(gf.ScoreModel):
    def __init__(self, inner, shift):
        super().__init__()
        self.inner, self.shift, self.parameterization = inner, shift, inner.parameterization

    def forward(self, x, t, *, cond=None, exit=None):
        return self.inner(x, t) + self.shift


@pytest.mark.parametrize(
    "process,kind",
    [(gf.VPProcess(), "eps"), (gf.VPProcess(), "x0"), (gf.VEProcess(), "score"), (gf.SubVPProcess(), "v"),
     (gf.LinearInterpolant(), "velocity")],
)  # fmt: skip
@pytest.mark.parametrize("weighting", ["none", "min_snr"])
def test_exact_model_minimises_dsm(process, kind, weighting):
    objective = DenoisingScoreMatching(process, weighting=weighting, t_min=0.05, t_max=0.95)
    x, _ = MIXTURE.sample(20000, torch.Generator().manual_seed(0))
    draws = objective.draw(20000, {"x": (2,)}, torch.Generator().manual_seed(1), dtype=torch.float64, device="cpu")
    exact = GaussianMixtureScore(MIXTURE, process, kind)
    best = float(objective.loss(exact, {"x": x}, draws))
    size = 3.0 if kind == "score" else 0.2  # the score target -eps/sigma is large and noisy at small sigma
    for shift in (-size, size):
        assert float(objective.loss(Shifted(exact, shift), {"x": x}, draws)) > best


def test_flow_matching_is_dsm_on_the_interpolant_with_velocity():
    x, _ = MIXTURE.sample(512, torch.Generator().manual_seed(0))
    fm = FlowMatching()
    draws = fm.draw(512, {"x": (2,)}, torch.Generator().manual_seed(3), dtype=torch.float64, device="cpu")
    model = GaussianMixtureScore(MIXTURE, gf.LinearInterpolant(), "velocity")
    dsm = DenoisingScoreMatching(gf.LinearInterpolant(), t_min=0.0, t_max=1.0)
    assert torch.equal(fm.loss(model, {"x": x}, draws), dsm.loss(model, {"x": x}, draws))
    with pytest.raises(ConfigError, match="velocity model"):
        fm.loss(GaussianMixtureScore(MIXTURE, gf.LinearInterpolant(), "eps"), {"x": x}, draws)


def test_min_snr_weight_for_eps_matches_its_definition():
    vp = gf.VPProcess()
    objective = DenoisingScoreMatching(vp, weighting="min_snr", min_snr_gamma=5.0)
    t = torch.linspace(0.05, 0.95, 7, dtype=torch.float64)
    snr = torch.exp(2 * vp.log_snr(t))
    w = objective._min_snr_weight("eps", torch.zeros(7, 2, dtype=torch.float64), t)
    assert torch.allclose(w, torch.clamp(snr, max=5.0) / snr)


def test_draws_are_reproducible_and_configs_round_trip():
    objective = DenoisingScoreMatching("ve", weighting="min_snr")
    a = objective.draw(8, {"x": (3, 2)}, torch.Generator().manual_seed(5), dtype=torch.float32, device="cpu")
    b = objective.draw(8, {"x": (3, 2)}, torch.Generator().manual_seed(5), dtype=torch.float32, device="cpu")
    assert all(torch.equal(a[k], b[k]) for k in a) and a["noise"].shape == (8, 3, 2)
    clone = OBJECTIVES.from_config(objective.to_config())
    assert clone.to_config() == objective.to_config() and isinstance(clone.process, gf.VEProcess)
    with pytest.raises(ConfigError, match="weighting"):
        DenoisingScoreMatching("vp", weighting="snr")


def test_min_snr_is_finite_where_sigma_or_alpha_is_zero_and_draw_needs_a_generator():
    from genflow.errors import GeneratorRequiredError

    li = gf.LinearInterpolant()
    objective = DenoisingScoreMatching(li, weighting="min_snr", t_min=0.0, t_max=1.0)
    t = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
    for kind in gf.PARAMETERIZATIONS:
        assert bool(torch.isfinite(objective._min_snr_weight(kind, torch.zeros(3, 2, dtype=torch.float64), t)).all())
    with pytest.raises(GeneratorRequiredError, match="draw"):
        objective.draw(4, {"x": (2,)}, None, dtype=torch.float64, device="cpu")


# --- an independent oracle: Gaussian data, the exact posterior mean and the closed-form minimum of the loss ---
# For x0 ~ N(m, s^2 I), x_t = a x0 + sigma eps and a target T = c1 x0 + c2 eps, (T, x_t) are jointly Gaussian per
# coordinate, so the best prediction is E[T | x_t] = c1 m + C / V (x_t - a m) and the smallest mean squared error is
# Var(T | x_t) = c1^2 s^2 + c2^2 - C^2 / V, with C = c1 a s^2 + c2 sigma and V = a^2 s^2 + sigma^2. Nothing below
# calls the process: a, sigma and (c1, c2) are written out by hand from the definitions.
M, S = torch.tensor([0.5, -1.0], dtype=torch.float64), 0.7


def _vp_alpha_sigma(t, beta_min=0.1, beta_max=20.0):
    alpha = torch.exp(-0.25 * t**2 * (beta_max - beta_min) - 0.5 * t * beta_min)
    return alpha, torch.sqrt(1 - alpha**2)


def _coefficients(kind, t):
    """(a, sigma, c1, c2) for VP (eps, x0, v) and for the straight path with the velocity target."""
    if kind == "velocity":
        return 1 - t, t, -torch.ones_like(t), torch.ones_like(t)  # x_t = (1 - t) x0 + t z, target z - x0
    a, sigma = _vp_alpha_sigma(t)
    c1, c2 = {"eps": (0 * t, 1 + 0 * t), "x0": (1 + 0 * t, 0 * t), "v": (-sigma, a)}[kind]
    return a, sigma, c1, c2


class PosteriorMean(gf.ScoreModel):
    def __init__(self, kind, shift=0.0):
        super().__init__()
        self.parameterization, self.shift = kind, shift

    def forward(self, x, t, *, cond=None, exit=None):
        a, sigma, c1, c2 = (c[:, None] for c in _coefficients(self.parameterization, t))
        cov, var = c1 * a * S**2 + c2 * sigma, a**2 * S**2 + sigma**2
        return c1 * M + cov / var * (x - a * M) + self.shift


@pytest.mark.parametrize(
    "objective,kind",
    [(DenoisingScoreMatching(gf.VPProcess(), t_min=0.05, t_max=0.95), "eps"),
     (DenoisingScoreMatching(gf.VPProcess(), t_min=0.05, t_max=0.95), "x0"),
     (DenoisingScoreMatching(gf.VPProcess(), t_min=0.05, t_max=0.95), "v"),
     (FlowMatching(), "velocity")],
)  # fmt: skip
def test_the_exact_posterior_mean_reaches_the_closed_form_minimum_of_the_loss(objective, kind):
    n = 40000
    x = M + S * torch.randn(n, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    draws = objective.draw(n, {"x": (2,)}, torch.Generator().manual_seed(1), dtype=torch.float64, device="cpu")
    a, sigma, c1, c2 = _coefficients(kind, draws["t"])
    conditional_var = c1**2 * S**2 + c2**2 - (c1 * a * S**2 + c2 * sigma) ** 2 / (a**2 * S**2 + sigma**2)
    minimum = float(conditional_var.mean())
    # each example's error is conditional_var * chi^2_2 / 2: its standard error over n examples
    standard_error = float(conditional_var.pow(2).mean().sqrt()) / n**0.5
    loss = float(objective.loss(PosteriorMean(kind), {"x": x}, draws))
    assert abs(loss - minimum) < 4 * standard_error, (loss, minimum, standard_error)
    # an offset c adds c^2 + 2 c mean(error); at the optimum the errors have mean zero, with standard error
    # sqrt(minimum / (2 n)) over the 2 n coordinates
    shifted = float(objective.loss(PosteriorMean(kind, shift=0.3), {"x": x}, draws))
    assert shifted - loss == pytest.approx(0.09, abs=2 * 0.3 * 4 * (minimum / (2 * n)) ** 0.5)
