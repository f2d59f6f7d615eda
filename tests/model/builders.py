"""One way to build every registered score model, and helpers shared by the model tests.

``build(name)`` uses ``MODELS.create(name)`` with its defaults unless ``BUILDERS``
holds a recipe for that name. A registered model that neither builds with defaults
nor has a recipe fails loudly, so every new model is covered by the suite.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

import genflow as gf
import genflow.testing  # noqa: F401  (registers "gaussian_mixture_score")
from genflow.model import ScoreModel
from genflow.testing import GaussianMixture, GaussianMixtureScore


def _gaussian_mixture_score() -> tuple[ScoreModel, tuple[int, ...]]:
    mixture = GaussianMixture.isotropic([0.3, 0.7], torch.tensor([[1.0, 0.0], [-1.0, 0.5]]), 0.5)
    return GaussianMixtureScore(mixture, gf.VPProcess()), mixture.event_shape


BUILDERS: dict[str, Callable[[], tuple[ScoreModel, tuple[int, ...]]]] = {
    "gaussian_mixture_score": _gaussian_mixture_score,
}
"""Recipes for registered models that need constructor arguments: name -> () -> (model, event_shape)."""


def build(name: str) -> tuple[ScoreModel, tuple[int, ...]]:
    """The model registered as ``name`` and the event shape it takes."""
    if name in BUILDERS:
        return BUILDERS[name]()
    try:
        model = gf.MODELS.create(name)
    except TypeError as err:
        pytest.fail(f"registered model {name!r} does not build with defaults ({err}); add a recipe to BUILDERS")
    shape = getattr(model, "event_shape", None)
    if shape is None:
        pytest.fail(f"registered model {name!r} declares no event_shape; add a recipe to BUILDERS")
    return model, tuple(shape)


def perturb_(model: nn.Module, seed: int, scale: float = 0.1) -> nn.Module:
    """Add seeded noise to every parameter, so zero-initialised layers (adaLN-Zero) carry signal."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=torch.float64).to(p.dtype))
    return model


def inputs(shape: tuple[int, ...], batch: int, seed: int, dtype: torch.dtype = torch.float32):
    """Seeded ``x`` of shape ``(batch, *shape)`` and ``t`` in ``[0.05, 0.95]``."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((batch, *shape), generator=g, dtype=torch.float64).to(dtype)
    t = (0.05 + 0.9 * torch.rand(batch, generator=g, dtype=torch.float64)).to(dtype)
    return x, t


NAMES = gf.MODELS.names()
EXITABLE = [n for n in NAMES if build(n)[0].num_blocks is not None]
