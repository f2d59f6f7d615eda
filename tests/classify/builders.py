"""One way to build every registered classifier with NON-default arguments (so a dropped argument shows).

A registered classifier without an entry here fails loudly, so every new one is covered by the suite.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from genflow.classify import CLASSIFIERS, Classifier

NON_DEFAULT: dict[str, dict[str, Any]] = {
    "cifar_resnet": {"num_classes": 7, "in_chans": 2, "image_size": 12, "depth": 14, "width": 6},
    "timm": {"arch": "resnet10t", "num_classes": 5, "in_chans": 3, "image_size": 20, "feature_index": 2,
             "model_args": {"drop_rate": 0.0, "stem_width": 8}},
    "batch_ensemble": {"base": {"name": "cifar_resnet", "num_classes": 7, "in_chans": 2, "image_size": 12, "depth": 8,
                                "width": 4}, "members": 3, "init": "normal"},
}  # fmt: skip
"""Registered name -> constructor arguments that differ from every default."""

NAMES = CLASSIFIERS.names()


def build(name: str) -> Classifier:
    """The classifier registered as ``name``, built with :data:`NON_DEFAULT` arguments."""
    if name not in NON_DEFAULT:
        pytest.fail(f"registered classifier {name!r} has no NON_DEFAULT arguments in tests/classify/builders.py")
    return CLASSIFIERS.create(name, **NON_DEFAULT[name])


def images(model: Classifier, batch: int, seed: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Seeded images in ``[0, 1]`` of the model's declared shape."""
    g = torch.Generator().manual_seed(seed)
    shape = (batch, model.in_chans, model.image_size, model.image_size)
    return torch.rand(shape, generator=g, dtype=torch.float64).to(dtype)


def perturb_(model: torch.nn.Module, seed: int, scale: float = 0.05) -> torch.nn.Module:
    """Add seeded noise to every parameter (and randomise BatchNorm statistics) so outputs depend on all weights."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=torch.float64).to(p.dtype))
        for name, b in model.named_buffers():
            if name.endswith("running_var"):
                b.copy_(0.5 + torch.rand(b.shape, generator=g, dtype=torch.float64).to(b.dtype))
    return model
