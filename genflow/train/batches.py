"""Named batches: how the :class:`~genflow.train.Trainer` turns dataset items into ``{field: tensor}``.

A batch is a dict of tensors whose leading dimension is the examples. The
fields are named by the dataset:

* a ``fields`` attribute names the positions of its tuple items
  (:class:`~genflow.data.NamedTensorDataset` has one);
* items that are dicts name themselves;
* a plain tensor item is ``("x",)`` and a 2-tuple without ``fields`` is ``("x", "label")``.

Floating fields are cast to the model's parameter dtype and moved to the
device; integer and bool fields keep their dtype (labels stay ``int64``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset, default_collate

from genflow.errors import ConfigError

__all__ = ["dataset_fields", "fetch_batch", "to_device", "field_shapes", "check_fields"]

DEFAULT_FIELDS = {1: ("x",), 2: ("x", "label")}


def dataset_fields(dataset: Dataset) -> tuple[str, ...] | None:
    """The field names a dataset declares (its ``fields`` attribute), checked; None if it declares none.

    Raises:
        ConfigError: ``fields`` is not a sequence of distinct non-empty strings.
    """
    fields = getattr(dataset, "fields", None)
    if fields is None:
        return None
    if (
        isinstance(fields, str)
        or not isinstance(fields, Sequence)
        or not all(isinstance(f, str) and f for f in fields)
        or len(set(fields)) != len(fields)
    ):
        raise ConfigError(f"{type(dataset).__name__}.fields must be a tuple of distinct field names; got {fields!r}")
    return tuple(fields)


def _name(items: Any, dataset: Dataset) -> dict[str, Any]:
    if isinstance(items, Mapping):
        return {str(k): v for k, v in items.items()}
    if isinstance(items, Tensor):
        items = (items,)
    if not isinstance(items, Sequence):
        raise ConfigError(
            f"{type(dataset).__name__} items must be a tensor, a tuple of tensors or a dict of tensors; "
            f"got {type(items).__name__}"
        )
    names = dataset_fields(dataset) or DEFAULT_FIELDS.get(len(items))
    if names is None:
        raise ConfigError(
            f"{type(dataset).__name__} items are {len(items)}-tuples: name them with a `fields` attribute "
            "(or use genflow.data.NamedTensorDataset); only 1- and 2-tuples have default names (x, label)"
        )
    if len(names) != len(items):
        raise ConfigError(
            f"{type(dataset).__name__}.fields names {len(names)} fields {names}; its items have {len(items)}"
        )
    return dict(zip(names, items, strict=True))


def fetch_batch(dataset: Dataset, indices: Tensor) -> dict[str, Tensor]:
    """The examples ``indices`` of ``dataset`` as ``{field: tensor}`` (leading dimension ``len(indices)``).

    Datasets exposing ``tensors`` (``TensorDataset``, genflow's in-memory datasets) are indexed in one go;
    others are read item by item and collated.

    Raises:
        ConfigError: an empty dataset, unnamed fields, or a field that is not a tensor.
    """
    if len(dataset) == 0:
        raise ConfigError(f"the dataset {type(dataset).__name__} is empty; training needs at least one batch")
    tensors = getattr(dataset, "tensors", None)
    if tensors is not None:
        items: Any = [t[indices] for t in tensors]
    else:
        items = default_collate([dataset[int(i)] for i in indices])
    batch = _name(items, dataset)
    for name, value in batch.items():
        if not isinstance(value, Tensor):
            raise ConfigError(
                f"field {name!r} of {type(dataset).__name__} must collate to a tensor; got {type(value).__name__}"
            )
    return batch


def to_device(batch: Mapping[str, Tensor], device: torch.device, dtype: torch.dtype) -> dict[str, Tensor]:
    """Move ``batch`` to ``device``; floating fields become ``dtype``, integer and bool fields keep theirs."""
    return {k: v.to(device, dtype) if v.is_floating_point() else v.to(device) for k, v in batch.items()}


def field_shapes(batch: Mapping[str, Tensor]) -> dict[str, tuple[int, ...]]:
    """The per-example shape of every field of ``batch``."""
    return {k: tuple(v.shape[1:]) for k, v in batch.items()}


def check_fields(needed: Sequence[str], available: Sequence[str], owner: str) -> None:
    """Raise :class:`ConfigError` unless every field in ``needed`` is in ``available``."""
    missing = [f for f in needed if f not in available]
    if missing:
        raise ConfigError(
            f"{owner} reads the batch fields {tuple(needed)}; the dataset gives {tuple(available)} "
            f"(missing {', '.join(missing)}); name the dataset's fields (a `fields` attribute, dict items "
            "or genflow.data.NamedTensorDataset)"
        )
