"""Small purifiers and models shared by the purification tests."""

from __future__ import annotations

import torch

import genflow as gf
from genflow.model.ncsn import ConvEnergyScoreModel, NoiseConditionalScoreNet
from genflow.testing import GaussianMixture, GaussianMixtureScore

VE = gf.VEProcess(0.01, 5.0)
SHAPE = (1, 4, 4)


def point_score(center: float = 0.5, std: float = 0.1) -> GaussianMixtureScore:
    """The exact score of N(center, std^2 I) images noised by ``VE``: ``-(x - c) / (sigma^2 + std^2)``."""
    mixture = GaussianMixture.isotropic([1.0], torch.full((1, *SHAPE), center, dtype=torch.float64), std)
    return GaussianMixtureScore(mixture, VE, parameterization="score")


def tiny_ncsn(seed: int = 0, dtype: torch.dtype = torch.float64) -> NoiseConditionalScoreNet:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return NoiseConditionalScoreNet(SHAPE, VE, hidden_size=8, depth=1).to(dtype)


def tiny_energy(seed: int = 0, dtype: torch.dtype = torch.float64) -> ConvEnergyScoreModel:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return ConvEnergyScoreModel(SHAPE, VE, hidden_size=8, depth=1).to(dtype)


def images(n: int = 3, seed: int = 0, dtype: torch.dtype = torch.float64, lo: float = 0.3, hi: float = 0.7):
    g = torch.Generator().manual_seed(seed)
    return (lo + (hi - lo) * torch.rand((n, *SHAPE), generator=g, dtype=torch.float64)).to(dtype)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)
