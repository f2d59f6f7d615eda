"""What every in-memory image dataset shares: the tensor dataset and the value ranges.

Two value ranges are used across genflow:

* ``"generation"``: pixels in ``[-1, 1]`` (diffusion and flow models),
* ``"classification"``: pixels in ``[0, 1]`` (classifiers, purifiers, attacks).

Loaders first bring pixels to ``[0, 1]`` and then map them with :func:`to_value_range`.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from genflow.data.errors import DataOptionError
from genflow.errors import ShapeError

__all__ = [
    "VALUE_RANGES", "ImageTensorDataset", "NamedTensorDataset", "check_choice", "check_value_range", "to_value_range",
]  # fmt: skip

VALUE_RANGES: dict[str, tuple[float, float]] = {"generation": (-1.0, 1.0), "classification": (0.0, 1.0)}


def _same_kind(value: Any, choice: Any) -> bool:
    if isinstance(choice, int) and not isinstance(choice, bool):  # any integer (numpy too), but not a bool or 8.0
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    return type(value) is type(choice)


def check_choice(value: Any, choices: Sequence[Any], name: str) -> Any:
    """Return the entry of ``choices`` equal to ``value`` (of the same kind: ``True`` is not ``1``, ``8.0`` not ``8``).

    Raises:
        DataOptionError: ``value`` is not one of ``choices`` (the message lists them).
    """
    for choice in choices:
        if _same_kind(value, choice) and value == choice:
            return choice
    expected = ", ".join(repr(c) for c in choices)
    raise DataOptionError(f"{name} must be one of {expected}; got {value!r}")


def check_value_range(value_range: Any) -> str:
    """Check a value-range name.

    Raises:
        DataOptionError: not ``"generation"`` or ``"classification"``.
    """
    return check_choice(value_range, tuple(VALUE_RANGES), "value_range")


def to_value_range(x01: Tensor, value_range: str) -> Tensor:
    """Map pixels from ``[0, 1]`` to ``value_range`` (``[-1, 1]`` is ``2 x - 1``)."""
    check_value_range(value_range)
    return x01 * 2.0 - 1.0 if value_range == "generation" else x01


class ImageTensorDataset(Dataset):
    """Images and integer labels held in memory; item ``i`` is ``(images[i], labels[i])``.

    Args:
        images: ``(N, C, H, W)`` floating tensor in ``value_range`` (stored as float32).
        labels: ``(N,)`` integer tensor (stored as int64).
        value_range: ``"generation"`` (``[-1, 1]``) or ``"classification"`` (``[0, 1]``).
        classes: Class names, ``classes[k]`` names label ``k``.

    Raises:
        ShapeError: ``images`` is not 4-D or the lengths differ.
        DataOptionError: unknown ``value_range``.
    """

    def __init__(self, images: Tensor, labels: Tensor, value_range: str, classes: Sequence[str]) -> None:
        if images.ndim != 4:
            raise ShapeError(f"images must have shape (N, C, H, W); got shape {tuple(images.shape)}")
        if labels.shape != images.shape[:1]:
            raise ShapeError(f"labels must have shape ({images.shape[0]},); got shape {tuple(labels.shape)}")
        self.images = images.to(torch.float32)
        self.labels = labels.to(torch.int64)
        self.value_range = check_value_range(value_range)
        self.classes = tuple(classes)

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def tensors(self) -> tuple[Tensor, Tensor]:
        """``(images, labels)``, as ``torch.utils.data.TensorDataset`` exposes them (batches by indexing)."""
        return self.images, self.labels

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.images[index], self.labels[index]

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(n={len(self)}, image_shape={tuple(self.images.shape[1:])}, "
            f"value_range={self.value_range!r}, classes={len(self.classes)})"
        )


class NamedTensorDataset(Dataset):
    """Examples made of named tensors sharing their leading dimension; item ``i`` is ``{name: tensor[i]}``.

    The :class:`~genflow.train.Trainer` reads a batch of it as ``{name: tensor[indices]}`` in one go
    (through :attr:`fields` and :attr:`tensors`), so an objective can ask for any field by name.

    Example::

        pairs = NamedTensorDataset(x_start=x0, x_end=x1, t_start=t0, t_end=t1, segment=k)

    Args:
        **tensors: One tensor per field, each of shape ``(N, *field_shape)``; the keyword is the field's name.

    Raises:
        ShapeError: no field, a field that is not a tensor or has no leading dimension, or lengths that differ.
    """

    def __init__(self, **tensors: Tensor) -> None:
        if not tensors:
            raise ShapeError("NamedTensorDataset needs at least one named tensor; got none")
        lengths = {}
        for name, value in tensors.items():
            if not isinstance(value, Tensor) or value.ndim < 1:
                got = f"shape {tuple(value.shape)}" if isinstance(value, Tensor) else type(value).__name__
                raise ShapeError(f"field {name!r} must be a tensor of shape (N, ...); got {got}")
            lengths[name] = value.shape[0]
        if len(set(lengths.values())) > 1:
            raise ShapeError(f"every field must have the same number of examples; got {lengths}")
        self._tensors = dict(tensors)

    @property
    def fields(self) -> tuple[str, ...]:
        """The field names, in the order of :attr:`tensors`."""
        return tuple(self._tensors)

    @property
    def tensors(self) -> tuple[Tensor, ...]:
        """The field tensors, in the order of :attr:`fields` (batches by indexing)."""
        return tuple(self._tensors.values())

    def __len__(self) -> int:
        return next(iter(self._tensors.values())).shape[0]

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        return {name: value[index] for name, value in self._tensors.items()}

    def __repr__(self) -> str:
        shapes = ", ".join(f"{k}={tuple(v.shape[1:])}" for k, v in self._tensors.items())
        return f"{type(self).__name__}(n={len(self)}, {shapes})"
