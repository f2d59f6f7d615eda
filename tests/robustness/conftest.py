"""A tiny digits classifier and a stand-in stochastic defence for the robustness tests.

The stand-in has the agreed defence interface (own generator, ``reseed``, ``gradient_mode``): it adds
Gaussian noise from its own generator, then smooths with a 3x3 box blur (the "purification"), then
classifies. In ``bpda`` mode the purification's backward pass is the identity (straight-through).
"""

from __future__ import annotations

import contextlib

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from genflow.data import load_dataset


class _StraightThrough(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, y):  # noqa: ANN001
        return y

    @staticmethod
    def backward(ctx, grad):  # noqa: ANN001
        return grad, None


class NoisyBlurDefence(nn.Module):
    def __init__(self, classifier: nn.Module, sigma: float = 0.1, seed: int = 0) -> None:
        super().__init__()
        self.classifier, self.sigma = classifier, sigma
        self.generator = torch.Generator().manual_seed(seed)
        self.mode = "full"
        self.noises: list[torch.Tensor] = []  # every noise drawn, for the RNG-guard test

    def reseed(self, seed: int) -> None:
        self.generator.manual_seed(seed)

    @contextlib.contextmanager
    def gradient_mode(self, mode: str):
        previous, self.mode = self.mode, mode
        try:
            yield
        finally:
            self.mode = previous

    def purify(self, x: torch.Tensor) -> torch.Tensor:
        noise = torch.randn(x.shape, generator=self.generator)
        self.noises.append(noise)
        y = F.avg_pool2d((x + self.sigma * noise).clamp(0, 1), 3, stride=1, padding=1, count_include_pad=False)
        return _StraightThrough.apply(x, y.detach()) if self.mode == "bpda" else y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.purify(x))


class GlobalNoiseDefence(nn.Module):
    """A defence that wrongly draws its noise from the global RNG (the guard must refuse it)."""

    def __init__(self, classifier: nn.Module) -> None:
        super().__init__()
        self.classifier = classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier((x + 0.1 * torch.randn_like(x)).clamp(0, 1))


@pytest.fixture(scope="session")
def digits_test():
    data = load_dataset("digits", split="test", size=8, value_range="classification")
    return data.images, data.labels


@pytest.fixture(scope="session")
def classifier():
    """An MLP on the 8x8 digits (full-batch Adam, ~95% test accuracy), in eval mode with frozen weights."""
    data = load_dataset("digits", split="train", size=8, value_range="classification")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        opt.zero_grad()
        F.cross_entropy(model(data.images), data.labels).backward()
        opt.step()
    return model.eval().requires_grad_(False)


@pytest.fixture
def defence(classifier):
    return NoisyBlurDefence(classifier)
