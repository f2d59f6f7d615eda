"""2-D toy distributions: shapes, standardisation, explicit-generator determinism, typed errors."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from genflow.data import TOY2D_NAMES, DataOptionError, toy2d
from genflow.errors import GeneratorRequiredError, UnknownComponentError
from tests.strategies import seeds


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_names():
    assert TOY2D_NAMES == ("moons", "eight_gaussians", "checkerboard", "swiss_roll", "spirals")


@pytest.mark.parametrize("name", TOY2D_NAMES)
def test_standardised_to_unit_scale(name):
    x = toy2d(name, 20_000, _gen(0))
    assert x.shape == (20_000, 2) and x.dtype == torch.float32 and bool(torch.isfinite(x).all())
    assert x.mean(0).abs().max() < 0.05, x.mean(0)
    assert (x.std(0) - 1.0).abs().max() < 0.05, x.std(0)


@pytest.mark.parametrize("name", TOY2D_NAMES)
@given(seed=seeds, n=st.integers(1, 64))
def test_same_seed_same_points_whatever_the_global_rng(name, seed, n):
    torch.manual_seed(0)
    a = toy2d(name, n, _gen(seed))
    torch.manual_seed(1)
    b = toy2d(name, n, _gen(seed))
    assert a.shape == (n, 2) and torch.equal(a, b)


@pytest.mark.parametrize("name", TOY2D_NAMES)
def test_different_seeds_differ_and_draws_advance_the_generator(name):
    assert not torch.equal(toy2d(name, 50, _gen(0)), toy2d(name, 50, _gen(1)))
    g = _gen(0)
    assert not torch.equal(toy2d(name, 50, g), toy2d(name, 50, g))


def test_global_rng_untouched():
    state = torch.random.get_rng_state()
    for name in TOY2D_NAMES:
        toy2d(name, 10, _gen(3))
    assert torch.equal(state, torch.random.get_rng_state())


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(UnknownComponentError) as info:
        toy2d("circles", 10, _gen(0))
    message = str(info.value)
    assert "'circles'" in message and all(name in message for name in TOY2D_NAMES)
    assert isinstance(info.value, LookupError)


@pytest.mark.parametrize("n", [0, -3, 2.5, True, "10"])
def test_bad_n(n):
    with pytest.raises(DataOptionError, match="n must be an integer >= 1"):
        toy2d("moons", n, _gen(0))


@pytest.mark.parametrize("generator", [None, 0, "seed"])
def test_generator_required(generator):
    with pytest.raises(GeneratorRequiredError, match="toy2d"):
        toy2d("moons", 10, generator)
