"""One entry point for every dataset: a registry of loaders, ``load_dataset(name, **kwargs)``.

A :class:`DatasetLoader` is a small component whose constructor declares the
loader's arguments (so an unknown or missing one is a typed error naming the
accepted ones) and which declares whether it draws (``takes_generator``). Users add
a dataset by subclassing it and registering the class in ``DATASET_LOADERS``; a
recipe's ``data`` section then names it like any shipped one.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch

from genflow.config import Configurable
from genflow.data.corrupted import digits_corrupted
from genflow.data.digits import load_digits_split
from genflow.data.images import load_cifar10, load_image_folder
from genflow.data.toy2d import toy2d
from genflow.errors import ConfigError, UnknownArgumentError
from genflow.registry import Registry

__all__ = [
    "DatasetLoader",
    "DATASET_LOADERS",
    "load_dataset",
    "DigitsLoader",
    "DigitsCorruptedLoader",
    "Toy2DLoader",
    "CIFAR10Loader",
    "ImageFolderLoader",
]


class DatasetLoader(Configurable, ABC):
    """Loads one dataset; the constructor takes (and so declares) the dataset's arguments.

    Subclasses set ``takes_generator = True`` when :meth:`load` draws random
    numbers; the pipeline then passes a generator seeded from the recipe.

    The config is ``{"name": registered name, "args": {...}}``, a form a recipe's
    ``data`` section may use; ``{name: loader, **arguments}`` is read too, unless an
    argument is itself called ``name`` (as :class:`Toy2DLoader`'s is).
    """

    takes_generator: ClassVar[bool] = False

    @property
    def arguments(self) -> dict[str, Any]:
        """The constructor arguments, defaults included."""
        return dict(getattr(self, "_config_args", {}))

    @abstractmethod
    def load(self, generator: torch.Generator | None = None) -> Any:
        """The dataset (or a tensor of examples); ``generator`` is given when ``takes_generator``."""

    def to_config(self) -> dict[str, Any]:
        return {"name": type(self).registry_name or type(self).__name__, "args": self.config_arguments()}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> DatasetLoader:
        """Build from ``{name, args: {...}}`` or ``{name, **arguments}``.

        Raises:
            ConfigError: not a mapping; UnknownArgumentError: keys beside ``args``, or unknown arguments.
        """
        if not isinstance(config, dict):
            raise ConfigError(f"a dataset config must be a mapping {{name: ..., ...}}; got {type(config).__name__}")
        if "args" not in config:
            return super().from_config(config)
        extra = sorted(set(config) - {"name", "args"})
        if extra:
            raise UnknownArgumentError(f"dataset config: {extra} given beside 'args'; put every argument in 'args'")
        if not isinstance(config["args"], dict):
            raise ConfigError(f"dataset config: 'args' must be a mapping; got {type(config['args']).__name__}")
        instance = cls(**config["args"])
        if config.get("name") not in (None, cls.registry_name):
            raise ConfigError(f"{cls.__name__}.from_config expects name {cls.registry_name!r}; got {config['name']!r}")
        return instance


DATASET_LOADERS: Registry[DatasetLoader] = Registry("dataset", DatasetLoader)


@DATASET_LOADERS.register("digits")
class DigitsLoader(DatasetLoader):
    """:func:`~genflow.data.load_digits_split` (scikit-learn's 8x8 digits, bundled)."""

    def __init__(self, split: str = "train", size: int = 8, value_range: str = "generation", seed: int = 0) -> None:
        pass

    def load(self, generator: torch.Generator | None = None) -> Any:
        return load_digits_split(**self.arguments)


@DATASET_LOADERS.register("digits_corrupted")
class DigitsCorruptedLoader(DatasetLoader):
    """:func:`~genflow.data.digits_corrupted` (a shifted copy of a digits split)."""

    def __init__(
        self, kind: str, severity: int, split: str = "test", size: int = 8, value_range: str = "classification"
    ) -> None:
        pass

    def load(self, generator: torch.Generator | None = None) -> Any:
        args = self.arguments
        return digits_corrupted(args.pop("kind"), args.pop("severity"), **args)


@DATASET_LOADERS.register("toy2d")
class Toy2DLoader(DatasetLoader):
    """:func:`~genflow.data.toy2d` (``n`` points of a 2-D toy distribution ``name``; draws)."""

    takes_generator = True

    def __init__(self, name: str, n: int) -> None:
        pass

    def load(self, generator: torch.Generator | None = None) -> Any:
        return toy2d(self.arguments["name"], self.arguments["n"], generator)


@DATASET_LOADERS.register("cifar10")
class CIFAR10Loader(DatasetLoader):
    """:func:`~genflow.data.load_cifar10` (CIFAR-10 files a user has under ``root``)."""

    def __init__(
        self, root: str | os.PathLike[str], train: bool = True, value_range: str = "generation", download: bool = False
    ) -> None:
        pass

    def load(self, generator: torch.Generator | None = None) -> Any:
        args = self.arguments
        return load_cifar10(args.pop("root"), **args)


@DATASET_LOADERS.register("image_folder")
class ImageFolderLoader(DatasetLoader):
    """:func:`~genflow.data.load_image_folder` (``root/<class>/<image>`` files)."""

    def __init__(
        self, root: str | os.PathLike[str], size: int = 32, value_range: str = "generation", grayscale: bool = False
    ) -> None:
        pass

    def load(self, generator: torch.Generator | None = None) -> Any:
        args = self.arguments
        return load_image_folder(args.pop("root"), **args)


def load_dataset(name: str, /, *, generator: torch.Generator | None = None, **kwargs: Any) -> Any:
    """Load the dataset registered under ``name`` with the loader's ``kwargs``.

    ============================ ==================================================================
    name                         loader
    ============================ ==================================================================
    ``digits``                   :func:`~genflow.data.load_digits_split` (``split``, ``size``, ...)
    ``digits_corrupted``         :func:`~genflow.data.digits_corrupted` (``kind``, ``severity``, ...)
    ``toy2d``                    :func:`~genflow.data.toy2d` (``name``, ``n``; needs ``generator``)
    ``cifar10``                  :func:`~genflow.data.load_cifar10` (``root``, ``train``, ...)
    ``image_folder``             :func:`~genflow.data.load_image_folder` (``root``, ``size``, ...)
    ============================ ==================================================================

    Args:
        name: A name in ``DATASET_LOADERS`` (positional only, so ``toy2d``'s own ``name=`` passes through).
        generator: The randomness of a loader that draws (``takes_generator``); refused by one that does not.
        **kwargs: The loader's arguments, by keyword.

    Returns:
        Whatever the loader returns (a dataset, or a tensor for ``toy2d``).

    Raises:
        UnknownComponentError: unknown ``name`` (the message lists the known ones).
        UnknownArgumentError: a keyword the loader does not accept (the message lists the accepted ones).
        MissingArgumentError: a required argument is missing.
    """
    loader = DATASET_LOADERS.create(name, **kwargs)
    if generator is not None and not loader.takes_generator:
        raise UnknownArgumentError(f"dataset {name!r} draws nothing; it takes no generator")
    return loader.load(generator)
