"""Shifted digits: deterministic, clipped, different from clean, and worse with severity."""

from __future__ import annotations

import pytest
import torch

from genflow.data import CORRUPTIONS, SEVERITIES, DataOptionError, digits_corrupted, load_digits_split


def _clean(size: int) -> torch.Tensor:
    return load_digits_split("test", size=size, value_range="classification").images


@pytest.mark.parametrize("size", [8, 16])
@pytest.mark.parametrize("kind", CORRUPTIONS)
def test_distance_to_clean_grows_with_severity(kind, size):
    clean = _clean(size)
    gaps = [float((digits_corrupted(kind, s, size=size).images - clean).abs().mean()) for s in SEVERITIES]
    assert gaps[0] > 0.01, gaps
    assert gaps[0] < gaps[1] < gaps[2], gaps


@pytest.mark.parametrize("kind", CORRUPTIONS)
def test_identical_on_every_call_and_global_rng_untouched(kind):
    state = torch.random.get_rng_state()
    a = digits_corrupted(kind, 2)
    torch.manual_seed(1234)  # the global generator plays no part
    b = digits_corrupted(kind, 2)
    torch.random.set_rng_state(state)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)


def test_kinds_and_severities_give_different_data():
    images = [digits_corrupted(k, s).images for k in CORRUPTIONS for s in SEVERITIES]
    for i in range(len(images)):
        for j in range(i + 1, len(images)):
            assert not torch.equal(images[i], images[j])


@pytest.mark.parametrize("value_range, lo, hi", [("classification", 0.0, 1.0), ("generation", -1.0, 1.0)])
@pytest.mark.parametrize("kind", ["gaussian_noise", "contrast"])
def test_clipped_to_the_range_with_clean_labels(kind, value_range, lo, hi):
    data = digits_corrupted(kind, 3, split="val", size=16, value_range=value_range)
    clean = load_digits_split("val", size=16, value_range=value_range)
    assert data.images.shape == clean.images.shape == (176, 1, 16, 16)
    assert torch.equal(data.labels, clean.labels) and data.value_range == value_range
    assert float(data.images.min()) >= lo and float(data.images.max()) <= hi
    if kind == "gaussian_noise":  # strong noise reaches both ends: clipping happened, not rescaling
        assert float(data.images.min()) == lo and float(data.images.max()) == hi


@pytest.mark.parametrize(
    "args, kwargs, expected",
    [
        (("snow", 1), {}, "gaussian_noise"),
        (("blur", 0), {}, "1, 2, 3"),
        (("blur", 4), {}, "1, 2, 3"),
        (("blur", "1"), {}, "1, 2, 3"),
        (("blur", 1), {"size": 10}, "8, 16, 32"),
        (("blur", 1), {"split": "all"}, "'train', 'val', 'test'"),
        (("blur", 1), {"value_range": "0-255"}, "'generation', 'classification'"),
    ],
)
def test_bad_options_raise_typed_errors(args, kwargs, expected):
    with pytest.raises(DataOptionError, match=expected):
        digits_corrupted(*args, **kwargs)
