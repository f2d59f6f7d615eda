"""Energy models: the score is -grad E under no_grad, and training reaches E through the gradient."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from torch import nn

from genflow.errors import ComponentError, ConfigError, ShapeError
from genflow.model import EnergyScoreModel, MLPEnergyScoreModel, count_flops
from tests.model.builders import inputs
from tests.strategies import batch_sizes, seeds


class QuadraticEnergy(nn.Module):
    """``E(x, t) = (1 + t) sum_i a_i (x_i - m_i)^2 / 2``, score ``-(1 + t) a (x - m)``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.mean = nn.Parameter(torch.linspace(-1.0, 1.0, dim))
        self.log_precision = nn.Parameter(torch.linspace(-0.5, 0.5, dim))

    def forward(self, x, t):
        return 0.5 * (1 + t) * (self.log_precision.exp() * (x - self.mean) ** 2).sum(-1)

    def score(self, x, t):
        return -(1 + t).unsqueeze(-1) * self.log_precision.exp() * (x - self.mean)


@settings(max_examples=5)
@given(batch=batch_sizes, seed=seeds)
def test_score_is_minus_grad_energy_inside_no_grad(batch, seed):
    energy = QuadraticEnergy(3).double()
    model = EnergyScoreModel(energy).eval()
    x, t = inputs((3,), batch, seed, dtype=torch.float64)
    with torch.no_grad():
        score = model(x, t)
    assert not score.requires_grad
    torch.testing.assert_close(score, energy.score(x, t), rtol=1e-12, atol=1e-12)


def test_training_gradients_flow_to_the_energy_parameters():
    energy = QuadraticEnergy(3)
    model = EnergyScoreModel(energy).train()
    x, t = inputs((3,), 4, seed=1)
    target = torch.zeros_like(x)
    (model(x, t) - target).square().sum().backward()
    # closed form: d/dm sum(s^2) with s = -(1+t) a (x - m) is -2 (1+t)^2 a^2 (x - m) summed over the batch
    a = energy.log_precision.detach().exp()
    expected = -(2 * (1 + t).unsqueeze(-1) ** 2 * a**2 * (x - energy.mean.detach())).sum(0)
    torch.testing.assert_close(energy.mean.grad, expected)
    assert energy.log_precision.grad.abs().sum() > 0


def test_eval_mode_detaches_unless_x_requires_grad():
    energy = QuadraticEnergy(2).double()
    model = EnergyScoreModel(energy).eval()
    x, t = inputs((2,), 3, seed=2, dtype=torch.float64)
    assert not model(x, t).requires_grad
    x.requires_grad_(True)
    (grad,) = torch.autograd.grad(model(x, t).sum(), x)  # d/dx sum(score) = -(1 + t) a
    expected = -(1 + t).unsqueeze(-1) * energy.log_precision.detach().exp().expand(3, 2)
    torch.testing.assert_close(grad, expected)


def test_mlp_energy_on_images_and_flops_include_the_backward_pass():
    model = MLPEnergyScoreModel(event_shape=(1, 8, 8), hidden_size=32)
    x, t = inputs((1, 8, 8), 2, seed=3)
    assert model(x, t).shape == x.shape
    assert model.energy(x, t).shape == (2,)
    forward_only = count_flops(model.energy_net, x, t)
    assert count_flops(model, x, t) > forward_only > 0
    # a fresh energy is close to |x|^2 / 2, so the score is close to -x (the N(0, I) prior)
    torch.testing.assert_close(model(x, t), -x, atol=0.5, rtol=0)


def test_bad_energy_networks_raise():
    x, t = inputs((2,), 3, seed=4)
    with pytest.raises(ComponentError, match="the class QuadraticEnergy"):
        EnergyScoreModel(QuadraticEnergy)

    class PerCoordinate(nn.Module):
        def forward(self, x, t):
            return x**2

    class Constant(nn.Module):
        def forward(self, x, t):
            return t * 2.0

    with pytest.raises(ShapeError, match=r"one energy per sample, shape \(3,\); got \(3, 2\)"):
        EnergyScoreModel(PerCoordinate())(x, t)
    with pytest.raises(ComponentError, match="does not depend on x"):
        EnergyScoreModel(Constant())(x, t)
    with pytest.raises(ComponentError, match="takes no cond"):
        EnergyScoreModel(QuadraticEnergy(2))(x, t, cond=torch.tensor([1, 2, 3]))
    with pytest.raises(ConfigError, match="cannot be stored in a JSON config"):
        EnergyScoreModel(QuadraticEnergy(2)).to_config()
    with pytest.raises(ConfigError, match="event_shape"):
        MLPEnergyScoreModel(event_shape=())
