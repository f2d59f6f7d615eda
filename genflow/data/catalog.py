"""One entry point for every dataset: ``load_dataset(name, **kwargs)`` (dispatch by a table, not if/elif)."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from genflow.data.corrupted import digits_corrupted
from genflow.data.digits import load_digits_split
from genflow.data.images import load_cifar10, load_image_folder
from genflow.data.toy2d import toy2d
from genflow.errors import UnknownComponentError

__all__ = ["DATASET_LOADERS", "load_dataset"]

#: name -> loader function (read-only).
DATASET_LOADERS: Mapping[str, Callable[..., Any]] = MappingProxyType(
    {
        "digits": load_digits_split,
        "digits_corrupted": digits_corrupted,
        "toy2d": toy2d,
        "cifar10": load_cifar10,
        "image_folder": load_image_folder,
    }
)


def load_dataset(name: str, /, **kwargs: Any) -> Any:
    """Call the loader registered under ``name`` with ``kwargs``.

    ============================ ==================================================================
    name                         loader
    ============================ ==================================================================
    ``digits``                   :func:`~genflow.data.load_digits_split` (``split``, ``size``, ...)
    ``digits_corrupted``         :func:`~genflow.data.digits_corrupted` (``kind``, ``severity``, ...)
    ``toy2d``                    :func:`~genflow.data.toy2d` (``name``, ``n``, ``generator``)
    ``cifar10``                  :func:`~genflow.data.load_cifar10` (``root``, ``train``, ...)
    ``image_folder``             :func:`~genflow.data.load_image_folder` (``root``, ``size``, ...)
    ============================ ==================================================================

    Args:
        name: A key of ``DATASET_LOADERS`` (positional only, so ``toy2d``'s own ``name=`` passes through).
        **kwargs: The loader's arguments, by keyword.

    Returns:
        Whatever the loader returns (a dataset, or a tensor for ``toy2d``).

    Raises:
        UnknownComponentError: unknown ``name`` (the message lists the known ones).
        TypeError: a keyword the loader does not accept (the message lists the accepted ones).
    """
    if name not in DATASET_LOADERS:
        raise UnknownComponentError(f"unknown dataset {name!r}; expected one of: {', '.join(DATASET_LOADERS)}")
    loader = DATASET_LOADERS[name]
    accepted = list(inspect.signature(loader).parameters)
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise TypeError(
            f"dataset {name!r} ({loader.__name__}) got unknown keyword(s) {', '.join(unknown)}; "
            f"accepted: {', '.join(accepted)}"
        )
    return loader(**kwargs)
