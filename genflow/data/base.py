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

__all__ = ["VALUE_RANGES", "ImageTensorDataset", "check_choice", "check_value_range", "to_value_range"]

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
