"""Sliced Wasserstein against its definition."""

from __future__ import annotations

import math

import pytest
import torch

from genflow.errors import ShapeError
from genflow.metrics import sliced_wasserstein


def test_sliced_wasserstein_definition():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(10000, 2, generator=gen, dtype=torch.float64)
    assert float(sliced_wasserstein(x, x.clone(), generator=gen)) == 0.0
    shift = torch.tensor([3.0, 4.0], dtype=torch.float64)
    y = torch.randn(10000, 2, generator=gen, dtype=torch.float64) + shift
    # N(m1, I) vs N(m2, I) in d dims: SW_2^2 = |m1 - m2|^2 / d
    expected = math.sqrt(25.0 / 2)
    assert float(sliced_wasserstein(x, y, projections=1000, generator=gen)) == pytest.approx(expected, rel=0.03)
    with pytest.raises(ShapeError):
        sliced_wasserstein(x, y[:10], generator=gen)
