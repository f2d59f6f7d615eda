"""``load_dataset`` dispatches through the ``DATASET_LOADERS`` registry, which users extend."""

from __future__ import annotations

import pytest
import torch

from genflow.data import (
    DATASET_LOADERS,
    DataNotFoundError,
    DatasetLoader,
    digits_corrupted,
    load_dataset,
    load_digits_split,
    toy2d,
)
from genflow.errors import MissingArgumentError, UnknownArgumentError, UnknownComponentError
from genflow.registry import Registry


def test_names():
    assert isinstance(DATASET_LOADERS, Registry)
    assert DATASET_LOADERS.names() == ["cifar10", "digits", "digits_corrupted", "image_folder", "reflow_pairs", "toy2d"]
    assert [n for n in DATASET_LOADERS if DATASET_LOADERS.get(n).takes_generator] == ["toy2d"]


def test_dispatch_matches_the_loaders():
    assert torch.equal(load_dataset("digits", split="val", size=16).images, load_digits_split("val", size=16).images)
    assert torch.equal(
        load_dataset("digits_corrupted", kind="rotation", severity=2).images, digits_corrupted("rotation", 2).images
    )
    points = load_dataset("toy2d", name="spirals", n=7, generator=torch.Generator().manual_seed(5))
    assert torch.equal(points, toy2d("spirals", 7, torch.Generator().manual_seed(5)))


def test_loader_defaults_are_the_functions_defaults():
    import inspect

    for name, function in [("digits", load_digits_split), ("digits_corrupted", digits_corrupted)]:
        own = inspect.signature(DATASET_LOADERS.get(name).__init__).parameters
        for param in inspect.signature(function).parameters.values():
            assert own[param.name].default == param.default, (name, param.name)


@pytest.mark.parametrize("name", ["cifar10", "image_folder"])
def test_file_datasets_dispatch(name, tmp_path):
    with pytest.raises(DataNotFoundError):
        load_dataset(name, root=tmp_path / "absent")


def test_unknown_name_lists_known_names():
    with pytest.raises(UnknownComponentError) as info:
        load_dataset("mnist")
    assert all(name in str(info.value) for name in DATASET_LOADERS)


def test_unknown_keyword_lists_accepted_ones():
    with pytest.raises(UnknownArgumentError, match="'resolution'") as info:
        load_dataset("digits", resolution=16)
    assert "split, size, value_range, seed" in str(info.value)
    assert isinstance(info.value, TypeError)


def test_missing_argument_and_stray_generator_are_named():
    with pytest.raises(MissingArgumentError, match="'root'"):
        load_dataset("image_folder")
    with pytest.raises(UnknownArgumentError, match="takes no generator"):
        load_dataset("digits", generator=torch.Generator())


def test_a_user_registers_a_dataset():
    class Ramp(DatasetLoader):
        def __init__(self, n: int = 4) -> None:
            pass

        def load(self, generator=None):
            return torch.arange(float(self.arguments["n"])).reshape(-1, 1)

    DATASET_LOADERS.register("test_ramp")(Ramp)
    try:
        assert torch.equal(load_dataset("test_ramp", n=3), torch.tensor([[0.0], [1.0], [2.0]]))
        loader = DATASET_LOADERS.from_config({"name": "test_ramp", "args": {"n": 5}})
        assert loader.to_config() == {"name": "test_ramp", "args": {"n": 5}}
        assert DATASET_LOADERS.from_config(loader.to_config()).load().shape == (5, 1)
    finally:
        DATASET_LOADERS._entries.pop("test_ramp")
