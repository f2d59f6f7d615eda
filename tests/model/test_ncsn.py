"""The conv score network and energy model: scaling by 1/sigma, the score is -grad E, typed errors."""

from __future__ import annotations

import pytest
import torch

import genflow as gf
from genflow.errors import ConfigError, ShapeError
from genflow.model.ncsn import ConvEnergyScoreModel, NoiseConditionalScoreNet

VE = gf.VEProcess(0.01, 5.0)


def test_ncsn_output_scales_like_one_over_sigma():
    torch.manual_seed(0)
    model = NoiseConditionalScoreNet((1, 4, 4), VE, hidden_size=8, depth=1)
    x, t = torch.rand(3, 1, 4, 4), torch.tensor([0.1, 0.5, 0.9])
    out = model(x, t)
    torch.testing.assert_close(out * VE.sigma(t)[:, None, None, None], -model.trunk(x, t))


def test_energy_score_is_minus_grad_energy_finite_differences():
    torch.manual_seed(0)
    model = ConvEnergyScoreModel((1, 4, 4), VE, hidden_size=8, depth=1).double()
    x, t = torch.rand(2, 1, 4, 4, dtype=torch.float64), torch.tensor([0.3, 0.6], dtype=torch.float64)
    score = model(x, t).detach()
    eps = 1e-6
    for idx in [(0, 0, 1, 2), (1, 0, 3, 0)]:
        e = torch.zeros_like(x)
        e[idx] = eps
        fd = (model.energy(x + e, t) - model.energy(x - e, t)).detach()[idx[0]] / (2 * eps)
        assert abs(float(-fd) - float(score[idx])) < 1e-6 * max(1.0, abs(float(fd)))


def test_energy_is_scaled_by_one_over_sigma():
    torch.manual_seed(0)
    model = ConvEnergyScoreModel((1, 4, 4), VE, hidden_size=8, depth=1)
    x, t = torch.rand(2, 1, 4, 4), torch.tensor([0.2, 0.7])
    torch.testing.assert_close(model.energy(x, t) * VE.sigma(t), model.energy_net.trunk(x, t).flatten(1).sum(1))


@pytest.mark.parametrize("cls", [NoiseConditionalScoreNet, ConvEnergyScoreModel])
def test_bad_arguments_and_inputs_raise_typed_errors(cls):
    with pytest.raises(ConfigError, match="event_shape"):
        cls((8, 8), VE)
    with pytest.raises(ConfigError, match="hidden_size"):
        cls((1, 4, 4), VE, hidden_size=0)
    with pytest.raises(ShapeError):
        cls((1, 4, 4), VE, hidden_size=8, depth=1)(torch.rand(2, 1, 5, 5), torch.rand(2))
