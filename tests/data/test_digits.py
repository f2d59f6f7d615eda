"""The scikit-learn digits: a fixed stratified split, value ranges, resizing, typed errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from genflow.data import (
    DIGITS_SIZES,
    DIGITS_SPLIT_COUNTS,
    DIGITS_SPLITS,
    DataOptionError,
    ImageTensorDataset,
    digits_split_indices,
    load_digits_split,
)
from genflow.errors import GenflowError, ShapeError

FRACTIONS = {"train": 0.7, "val": 0.1, "test": 0.2}


def test_documented_split_counts():
    assert DIGITS_SPLIT_COUNTS == {"train": 1253, "val": 176, "test": 368}
    for split in DIGITS_SPLITS:
        data = load_digits_split(split)
        assert len(data) == DIGITS_SPLIT_COUNTS[split] == data.labels.shape[0]


@pytest.mark.parametrize("seed", [0, 1, 12345])
def test_splits_are_disjoint_and_cover_everything(seed):
    parts = [set(digits_split_indices(split, seed=seed).tolist()) for split in DIGITS_SPLITS]
    assert sum(len(p) for p in parts) == 1797
    assert set().union(*parts) == set(range(1797))
    assert [len(p) for p in parts] == [DIGITS_SPLIT_COUNTS[s] for s in DIGITS_SPLITS]  # counts do not depend on seed


def test_split_is_pinned():
    """The seed-0 split must never change (across runs, platforms and library versions): a fingerprint."""
    test = digits_split_indices("test").tolist()
    assert test[:8] == [0, 3, 4, 12, 18, 46, 47, 49]
    assert sum(test) == 337016


def test_seed_changes_membership_not_counts():
    a, b = digits_split_indices("test", seed=0), digits_split_indices("test", seed=1)
    assert a.shape == b.shape and not torch.equal(a, b)


def test_deterministic_across_calls():
    a, b = load_digits_split("val", size=16), load_digits_split("val", size=16)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)


def test_label_balance_is_preserved():
    total = torch.zeros(10, dtype=torch.int64)
    for split in DIGITS_SPLITS:
        total += torch.bincount(load_digits_split(split).labels, minlength=10)
    for split in DIGITS_SPLITS:
        counts = torch.bincount(load_digits_split(split).labels, minlength=10)
        # floors: train and val are within 1 of their share, test (the remainder) within 2
        assert ((counts.double() - FRACTIONS[split] * total.double()).abs() < 2.0).all(), (split, counts, total)


@pytest.mark.parametrize("size", DIGITS_SIZES)
@pytest.mark.parametrize("value_range, lo, hi", [("generation", -1.0, 1.0), ("classification", 0.0, 1.0)])
def test_shapes_dtypes_and_value_ranges(size, value_range, lo, hi):
    data = load_digits_split("test", size=size, value_range=value_range)
    assert data.images.shape == (368, 1, size, size) and data.images.dtype == torch.float32
    assert data.labels.dtype == torch.int64 and data.classes == tuple("0123456789")
    assert float(data.images.min()) >= lo and float(data.images.max()) <= hi
    assert float(data.images.min()) == pytest.approx(lo, abs=0.05)  # the range is used, not squeezed
    assert float(data.images.max()) == pytest.approx(hi, abs=0.05)


def test_numpy_integer_size_is_accepted():
    assert load_digits_split("val", size=np.int64(16)).images.shape == (176, 1, 16, 16)


def test_ranges_are_the_same_images():
    gen = load_digits_split("train", value_range="generation").images
    cls = load_digits_split("train", value_range="classification").images
    torch.testing.assert_close(gen, 2 * cls - 1)


@pytest.mark.parametrize("size", [16, 32])
def test_resize_keeps_the_picture(size):
    small = load_digits_split("test", size=8, value_range="classification").images
    big = load_digits_split("test", size=size, value_range="classification").images
    back = F.avg_pool2d(big, size // 8)  # shrinking the enlarged image again gives (a blurred) original
    assert float(torch.corrcoef(torch.stack([back.flatten(), small.flatten()]))[0, 1]) > 0.95
    torch.testing.assert_close(big.mean(dim=(1, 2, 3)), small.mean(dim=(1, 2, 3)), atol=0.02, rtol=0)


def test_dataset_protocol_and_dataloader():
    data = load_digits_split("val")
    image, label = data[3]
    assert image.shape == (1, 8, 8) and label.ndim == 0
    x, y = next(iter(DataLoader(data, batch_size=32, shuffle=False)))
    assert x.shape == (32, 1, 8, 8) and y.shape == (32,)
    assert "n=176" in repr(data)


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        ({"split": "training"}, "'train', 'val', 'test'"),
        ({"split": "test", "size": 12}, "8, 16, 32"),
        ({"split": "test", "size": "8"}, "8, 16, 32"),
        ({"split": "test", "size": 8.0}, "8, 16, 32"),
        ({"split": "test", "value_range": "unit"}, "'generation', 'classification'"),
        ({"split": "test", "seed": 1.5}, "seed must be an int"),
        ({"split": "test", "seed": True}, "seed must be an int"),
    ],
)
def test_bad_options_raise_typed_errors(kwargs, expected):
    with pytest.raises(DataOptionError, match=expected) as info:
        load_digits_split(**kwargs)
    assert isinstance(info.value, ValueError) and isinstance(info.value, GenflowError)
    assert "got" in str(info.value)


def test_image_tensor_dataset_checks_shapes():
    with pytest.raises(ShapeError, match=r"\(N, C, H, W\)"):
        ImageTensorDataset(torch.zeros(3, 8, 8), torch.zeros(3), "generation", "abc")
    with pytest.raises(ShapeError, match=r"\(3,\)"):
        ImageTensorDataset(torch.zeros(3, 1, 8, 8), torch.zeros(4), "generation", "abc")
