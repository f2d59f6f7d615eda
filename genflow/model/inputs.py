"""Boundary checks shared by the score models: state, time, class labels.

Each raises a typed error from :mod:`genflow.errors` naming the model, what it
expected and what it got. Only the label range check reads values (one sync).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from genflow.errors import ComponentError, ConfigError, DTypeError, ShapeError
from genflow.validation import check_state, check_time

__all__ = ["check_model_input", "check_labels", "check_no_cond", "check_backbone_sizes"]


def check_model_input(
    x: Any, t: Any, event_shape: Sequence[int] | None, dtype: torch.dtype | None, owner: str
) -> tuple[Tensor, Tensor]:
    """Check ``x`` against ``(batch, *event_shape)`` and the parameters' dtype; return ``x`` and ``t`` as ``(batch,)``.

    Args:
        x: The state.
        t: Times, a scalar or ``(batch,)``; cast to ``x``'s dtype and device.
        event_shape: The shape each sample must have (``None``: any).
        dtype: The model parameters' dtype (``None``: any floating dtype).
        owner: Model name used in messages.

    Raises:
        DTypeError: ``x`` is not a floating tensor, or its dtype differs from the parameters'.
        ShapeError: ``x`` is not ``(batch, *event_shape)``, or ``t`` is not scalar or ``(batch,)``.
    """
    x = check_state(x)
    if event_shape is not None and tuple(x.shape[1:]) != tuple(event_shape):
        expected = ", ".join(["batch", *(str(s) for s in event_shape)])
        raise ShapeError(f"{owner} expects x of shape ({expected}); got {tuple(x.shape)}")
    if dtype is not None and x.dtype != dtype:
        raise DTypeError(f"{owner} has {dtype} parameters; got x of dtype {x.dtype} (convert one with .to(dtype))")
    return x, check_time(t, x.shape[0], like=x)


def check_no_cond(cond: Any, owner: str) -> None:
    """Raise :class:`ComponentError` if an unconditional model is given ``cond``."""
    if cond is not None:
        raise ComponentError(f"{owner} is unconditional and takes no cond; got {type(cond).__name__}")


def check_labels(cond: Any, batch: int, num_classes: int, *, device: torch.device, owner: str) -> Tensor | None:
    """Validate ``cond`` as class labels; ``None`` becomes the null label ``num_classes``.

    Returns:
        ``None`` for a model with ``num_classes=0``, else long labels ``(batch,)`` on ``device``.

    Raises:
        ComponentError: ``cond`` given to a model built with ``num_classes=0``.
        DTypeError: ``cond`` is not an integer tensor.
        ShapeError: ``cond`` is not ``(batch,)``, or a label lies outside ``[0, num_classes]``.
    """
    if num_classes == 0:
        check_no_cond(cond, f"{owner} (num_classes=0)")
        return None
    if cond is None:
        return torch.full((batch,), num_classes, dtype=torch.long, device=device)
    if not isinstance(cond, Tensor) or cond.is_floating_point() or cond.is_complex() or cond.dtype == torch.bool:
        got = f"dtype {cond.dtype}" if isinstance(cond, Tensor) else type(cond).__name__
        raise DTypeError(f"{owner} cond must be an integer tensor of class labels, shape ({batch},); got {got}")
    if cond.shape != (batch,):
        raise ShapeError(f"{owner} cond must have shape ({batch},); got {tuple(cond.shape)}")
    lo, hi = (int(v) for v in torch.aminmax(cond))
    if lo < 0 or hi > num_classes:
        raise ShapeError(
            f"{owner} cond labels must lie in [0, {num_classes}] ({num_classes} is the null label); "
            f"got values in [{lo}, {hi}]"
        )
    return cond.to(device=device, dtype=torch.long)


def check_backbone_sizes(
    image_size: int,
    patch_size: int,
    in_channels: int,
    hidden_size: int,
    depth: int,
    num_heads: int,
    num_classes: int,
    class_dropout: float,
) -> None:
    """Constructor checks shared by the transformer backbones.

    Raises:
        ConfigError: a size that is not a positive int (``num_classes``: >= 0), ``patch_size``
            not dividing ``image_size``, ``hidden_size`` not divisible by ``num_heads``, or
            ``class_dropout`` outside ``[0, 1]``.
    """
    sizes = dict(image_size=image_size, patch_size=patch_size, in_channels=in_channels, hidden_size=hidden_size)
    sizes.update(depth=depth, num_heads=num_heads)
    for name, value in sizes.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"{name} must be a positive int; got {value!r}")
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 0:
        raise ConfigError(f"num_classes must be an int >= 0; got {num_classes!r}")
    if image_size % patch_size:
        raise ConfigError(f"patch_size must divide image_size; got image_size={image_size}, patch_size={patch_size}")
    if hidden_size % num_heads:
        raise ConfigError(f"hidden_size must be divisible by num_heads; got {hidden_size} and {num_heads}")
    if not 0.0 <= class_dropout <= 1.0:
        raise ConfigError(f"class_dropout must lie in [0, 1]; got {class_dropout}")
