"""Frechet distance against its definition and the closed form for diagonal covariances."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import scipy.stats
import torch
from hypothesis import given
from hypothesis import strategies as st

from genflow.errors import NonFiniteError, ShapeError
from genflow.metrics import frechet_distance, frechet_distance_from_statistics, gaussian_statistics


def diagonal_closed_form(m1, v1, m2, v2) -> float:
    """|m1 - m2|^2 + sum_i (sqrt(v1_i) - sqrt(v2_i))^2: Tr(C1 + C2 - 2 (C1^1/2 C2 C1^1/2)^1/2) for diagonal C."""
    return float(((m1 - m2) ** 2).sum() + ((np.sqrt(v1) - np.sqrt(v2)) ** 2).sum())


def definition(m1, c1, m2, c2) -> float:
    """The symmetric form of the definition, with symmetric square roots from eigh."""
    r1 = scipy.linalg.sqrtm(c1).real
    inner = r1 @ c2 @ r1
    w, v = np.linalg.eigh((inner + inner.T) / 2)
    return float(((m1 - m2) ** 2).sum() + np.trace(c1) + np.trace(c2) - 2 * np.sqrt(np.clip(w, 0, None)).sum())


gaussians = st.integers(1, 6).flatmap(
    lambda d: st.tuples(
        *[st.lists(st.floats(lo, hi), min_size=d, max_size=d).map(np.array) for lo, hi in [(-3, 3), (0.05, 4)] * 2]
    )
)


@given(params=gaussians, seed=st.integers(0, 2**31 - 1))
def test_statistics_form_matches_closed_form_for_diagonal_and_rotated_covariances(params, seed):
    m1, v1, m2, v2 = params
    expected = diagonal_closed_form(m1, v1, m2, v2)
    got = frechet_distance_from_statistics(m1, np.diag(v1), m2, np.diag(v2))
    assert got == pytest.approx(expected, rel=1e-8, abs=1e-9)
    # a common rotation of both Gaussians leaves the distance unchanged
    q = scipy.stats.ortho_group.rvs(len(m1), random_state=seed) if len(m1) > 1 else np.ones((1, 1))
    rotated = frechet_distance_from_statistics(q @ m1, q @ np.diag(v1) @ q.T, q @ m2, q @ np.diag(v2) @ q.T)
    assert rotated == pytest.approx(expected, rel=1e-6, abs=1e-8)


@given(d=st.integers(1, 8), seed=st.integers(0, 2**31 - 1))
def test_statistics_form_matches_symmetric_definition_for_full_covariances(d, seed):
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=(d, d)), rng.normal(size=(d, d))
    c1, c2 = a @ a.T + 0.1 * np.eye(d), b @ b.T + 0.1 * np.eye(d)
    m1, m2 = rng.normal(size=d), rng.normal(size=d)
    expected = definition(m1, c1, m2, c2)
    assert frechet_distance_from_statistics(m1, c1, m2, c2) == pytest.approx(expected, rel=1e-7, abs=1e-8)
    # symmetric in its arguments
    assert frechet_distance_from_statistics(m2, c2, m1, c1) == pytest.approx(expected, rel=1e-7, abs=1e-8)


def test_samples_from_known_gaussians_approach_closed_form():
    gen = torch.Generator().manual_seed(0)
    n, m1, v1 = 40000, np.array([0.0, 1.0, -1.0]), np.array([1.0, 0.25, 4.0])
    m2, v2 = np.array([1.0, 1.0, 0.5]), np.array([2.0, 1.0, 1.0])
    a = torch.randn(n, 3, generator=gen, dtype=torch.float64) * torch.tensor(np.sqrt(v1)) + torch.tensor(m1)
    b = torch.randn(n, 3, generator=gen, dtype=torch.float64) * torch.tensor(np.sqrt(v2)) + torch.tensor(m2)
    expected = diagonal_closed_form(m1, v1, m2, v2)
    assert frechet_distance(a, b) == pytest.approx(expected, rel=0.03)
    assert frechet_distance(a, b) == pytest.approx(frechet_distance(b, a), rel=1e-9)
    assert frechet_distance(a, a.clone()) == pytest.approx(0.0, abs=1e-9)
    assert frechet_distance(a.numpy(), a.numpy().copy()) == pytest.approx(0.0, abs=1e-9)


def test_identical_sets_give_zero_and_same_law_gives_small_positive_bias():
    gen = torch.Generator().manual_seed(1)
    a = torch.randn(500, 16, generator=gen)
    assert frechet_distance(a, a.clone()) == pytest.approx(0.0, abs=1e-8)
    b = torch.randn(500, 16, generator=gen)
    small, large = frechet_distance(a[:100], b[:100]), frechet_distance(a, b)
    assert 0.0 < large < small  # the plug-in estimate is biased upwards, less so with more samples


def test_gaussian_statistics_are_float64_mean_and_unbiased_covariance():
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(50, 4, generator=gen)
    mean, cov = gaussian_statistics(x)
    assert mean.dtype == cov.dtype == torch.float64 and mean.shape == (4,) and cov.shape == (4, 4)
    torch.testing.assert_close(mean, x.double().mean(0))
    torch.testing.assert_close(cov, torch.cov(x.double().T))
    mean1, cov1 = gaussian_statistics(x[:, :1])
    assert cov1.shape == (1, 1) and float(cov1) == pytest.approx(float(x[:, 0].double().var()))


def test_fewer_samples_than_dimensions_still_give_a_finite_distance():
    gen = torch.Generator().manual_seed(3)
    a, b = torch.randn(5, 20, generator=gen), torch.randn(6, 20, generator=gen) + 1.0
    value = frechet_distance(a, b)
    assert math.isfinite(value) and value > 0


def test_bad_input_raises_typed_errors():
    x = torch.zeros(10, 3)
    with pytest.raises(ShapeError, match="same feature dimension"):
        frechet_distance(x, torch.zeros(10, 4))
    with pytest.raises(ShapeError, match="at least 2 samples"):
        frechet_distance(x, torch.zeros(1, 3))
    with pytest.raises(ShapeError, match=r"\(n, d\)"):
        frechet_distance(torch.zeros(10), torch.zeros(10))
    with pytest.raises(NonFiniteError):
        frechet_distance(x, torch.full((10, 3), float("nan")))
    with pytest.raises(ShapeError, match=r"\(d, d\)"):
        frechet_distance_from_statistics(np.zeros(3), np.eye(3), np.zeros(3), np.eye(2))


def test_inception_fid_needs_the_optional_extra():
    import importlib.util

    from genflow.errors import ConfigError
    from genflow.metrics.inception import inception_fid, to_uint8_rgb

    images = torch.linspace(-1, 1, 2 * 64).reshape(2, 1, 8, 8)
    rgb = to_uint8_rgb(images)
    assert rgb.shape == (2, 3, 8, 8) and rgb.dtype == torch.uint8 and int(rgb.min()) == 0 and int(rgb.max()) == 255
    if importlib.util.find_spec("torch_fidelity") is None:
        with pytest.raises(ConfigError, match=r"genflow\[fid\]"):
            inception_fid(images, images)
