"""Unbiased Gaussian-kernel MMD^2 against its population value."""

from __future__ import annotations

import math

import pytest
import torch

from genflow.errors import ConfigError, DTypeError, ShapeError
from genflow.metrics import gaussian_mmd2, median_bandwidth


def population_mmd2(shift: float, d: int, s: float, sigma: float) -> float:
    """MMD^2 between N(0, s^2 I) and N(shift e_1, s^2 I) for k = exp(-|x - y|^2 / (2 sigma^2)).

    E k(x, y) = (sigma^2 / (sigma^2 + 2 s^2))^(d/2) exp(-|m_x - m_y|^2 / (2 (sigma^2 + 2 s^2))).
    """
    c = (sigma**2 / (sigma**2 + 2 * s**2)) ** (d / 2)
    return 2 * c * (1 - math.exp(-(shift**2) / (2 * (sigma**2 + 2 * s**2))))


def test_same_distribution_gives_about_zero_and_shift_increases_it():
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(800, 2, generator=gen), torch.randn(800, 2, generator=gen)
    assert abs(float(gaussian_mmd2(x, y, bandwidth=1.0))) < 2e-3
    shift = torch.tensor([1.0, 0.0])
    values = [float(gaussian_mmd2(x, y + a * shift, bandwidth=1.0)) for a in (0.25, 0.5, 1.0, 2.0)]
    assert all(v > 0 for v in values) and values == sorted(values)
    assert values[2] == pytest.approx(population_mmd2(1.0, 2, 1.0, 1.0), rel=0.15)
    assert float(gaussian_mmd2(x, y + 2 * shift)) > 0.1  # median heuristic


@pytest.mark.parametrize("shift", [0.0, 1.0])
def test_estimator_is_unbiased(shift):
    # Mean of many tiny-sample estimates (m = 6, n = 9) against the population value;
    # the biased V-statistic would sit about 2 (1 - c) / n above it.
    gen = torch.Generator().manual_seed(1)
    d, reps = 3, 600
    estimates = torch.stack(
        [
            gaussian_mmd2(
                torch.randn(6, d, generator=gen, dtype=torch.float64),
                torch.randn(9, d, generator=gen, dtype=torch.float64) + torch.tensor([shift, 0.0, 0.0]),
                bandwidth=1.5,
            )
            for _ in range(reps)
        ]
    )
    stderr = float(estimates.std()) / math.sqrt(reps)
    assert float(estimates.mean()) == pytest.approx(population_mmd2(shift, d, 1.0, 1.5), abs=4 * stderr)
    assert (estimates < 0).any()  # an unbiased estimator of 0 must go negative sometimes


def test_any_event_shape_is_flattened():
    gen = torch.Generator().manual_seed(2)
    x, y = torch.randn(50, 2, 3, generator=gen), torch.randn(40, 2, 3, generator=gen) + 0.3
    torch.testing.assert_close(gaussian_mmd2(x, y), gaussian_mmd2(x.reshape(50, 6), y.reshape(40, 6)))
    assert gaussian_mmd2(x, y).dtype == torch.float64 and gaussian_mmd2(x, y).shape == ()


def test_median_bandwidth_is_the_median_pairwise_distance():
    x, y = torch.tensor([[0.0], [1.0]]), torch.tensor([[3.0], [7.0]])
    # distances 1, 3, 7, 2, 6, 4 -> lower median 3
    assert float(median_bandwidth(x, y)) == 3.0


def test_bad_input_raises_typed_errors():
    x = torch.zeros(5, 2)
    with pytest.raises(ShapeError, match="event size"):
        gaussian_mmd2(x, torch.zeros(5, 3))
    with pytest.raises(ShapeError, match="at least 2"):
        gaussian_mmd2(x, torch.zeros(1, 2))
    with pytest.raises(ConfigError, match="bandwidth"):
        gaussian_mmd2(x, x, bandwidth=0.0)
    with pytest.raises(ConfigError, match="bandwidth 0"):
        gaussian_mmd2(x, x)
    with pytest.raises(DTypeError):
        gaussian_mmd2(torch.zeros(5, 2, dtype=torch.int64), x)
