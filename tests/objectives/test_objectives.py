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
    # the target is the straight-line velocity noise - x0: a model that knows it has zero loss
    t, z = draws["t"], draws["noise"]
    xt = (1 - t[:, None]) * x + t[:, None] * z
    target = z - x
    assert torch.allclose(gf.LinearInterpolant().convert(target, "velocity", "velocity", xt, t), target)
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
