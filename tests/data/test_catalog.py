"""``load_dataset`` dispatches by name and rejects unknown names and keywords."""

from __future__ import annotations

import pytest
import torch

from genflow.data import (
    DATASET_LOADERS,
    DataNotFoundError,
    digits_corrupted,
    load_dataset,
    load_digits_split,
    toy2d,
)
from genflow.errors import UnknownComponentError


def test_names():
    assert list(DATASET_LOADERS) == ["digits", "digits_corrupted", "toy2d", "cifar10", "image_folder"]


def test_dispatch_matches_the_loaders():
    assert torch.equal(load_dataset("digits", split="val", size=16).images, load_digits_split("val", size=16).images)
    assert torch.equal(
        load_dataset("digits_corrupted", kind="rotation", severity=2).images, digits_corrupted("rotation", 2).images
    )
    points = load_dataset("toy2d", name="spirals", n=7, generator=torch.Generator().manual_seed(5))
    assert torch.equal(points, toy2d("spirals", 7, torch.Generator().manual_seed(5)))


@pytest.mark.parametrize("name", ["cifar10", "image_folder"])
def test_file_datasets_dispatch(name, tmp_path):
    with pytest.raises(DataNotFoundError):
        load_dataset(name, root=tmp_path / "absent")


def test_unknown_name_lists_known_names():
    with pytest.raises(UnknownComponentError) as info:
        load_dataset("mnist")
    assert all(name in str(info.value) for name in DATASET_LOADERS)


def test_unknown_keyword_lists_accepted_ones():
    with pytest.raises(TypeError, match="resolution") as info:
        load_dataset("digits", resolution=16)
    assert "split, size, value_range, seed" in str(info.value)
