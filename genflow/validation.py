"""Checks at the boundary: every public entry validates its inputs with these.

Each helper raises a typed error from :mod:`genflow.errors` whose message says
what was expected and what was given. None of them synchronises a GPU except
where stated (checks on values, not shapes, need one device-to-host copy).
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import Tensor

from genflow.errors import ComponentError, DTypeError, ShapeError, TimeGridError, TimeRangeError

__all__ = [
    "check_state",
    "check_time",
    "check_time_range",
    "check_time_grid",
    "check_instance",
]


def check_state(x: Any, name: str = "x") -> Tensor:
    """Check that ``x`` is a floating tensor of shape ``(batch, *event_shape)``.

    Raises:
        DTypeError: ``x`` is not a tensor, or not floating point.
        ShapeError: ``x`` has no batch dimension or an empty batch.
    """
    if not isinstance(x, Tensor):
        raise DTypeError(f"{name} must be a torch.Tensor of shape (batch, *event_shape); got {type(x).__name__}")
    if not x.is_floating_point():
        raise DTypeError(f"{name} must be a floating-point tensor; got dtype {x.dtype}")
    if x.ndim < 1 or x.shape[0] == 0:
        raise ShapeError(f"{name} must have shape (batch, *event_shape) with batch >= 1; got shape {tuple(x.shape)}")
    return x


def check_time(t: Any, batch: int, *, like: Tensor, name: str = "t") -> Tensor:
    """Return ``t`` as a tensor of shape ``(batch,)`` on ``like``'s device and dtype.

    Accepts a Python number, a 0-d tensor or a tensor of shape ``(batch,)``.
    Only the shape is checked here; range checks cost a sync and live in
    :func:`check_time_range`.

    Raises:
        ShapeError: ``t`` has a shape other than ``()`` or ``(batch,)``.
    """
    t = torch.as_tensor(t, dtype=like.dtype, device=like.device)
    if t.ndim == 0:
        return t.expand(batch)
    if t.shape != (batch,):
        raise ShapeError(f"{name} must be a scalar or have shape ({batch},); got shape {tuple(t.shape)}")
    return t


def check_time_range(t: Tensor, name: str = "t") -> None:
    """Raise :class:`TimeRangeError` unless every entry of ``t`` is in ``[0, 1]`` (one sync)."""
    if t.numel() == 0:
        return
    if not bool(torch.isfinite(t).all()):
        raise TimeRangeError(f"{name} must be finite and in [0, 1]; got non-finite values {t.flatten()[:8].tolist()}")
    lo, hi = float(t.min()), float(t.max())
    if lo < 0.0 or hi > 1.0:
        raise TimeRangeError(f"{name} must lie in [0, 1] (t=0 data, t=1 noise); got values in [{lo:.6g}, {hi:.6g}]")


def check_time_grid(ts: Any, *, like: Tensor | None = None, name: str = "ts") -> Tensor:
    """Check a time grid: 1-D, finite, strictly monotone, inside ``[0, 1]``.

    Args:
        ts: Sequence or tensor of times.
        like: If given, the grid is moved to its device, in float64 for a float64
            state and float32 otherwise (a bfloat16 grid could not resolve small steps).
        name: Name used in error messages.

    Returns:
        The grid as a 1-D tensor.

    Raises:
        TimeGridError: not 1-D, empty, non-finite, or not strictly monotone.
        TimeRangeError: a time outside ``[0, 1]``.
    """
    if not isinstance(ts, Tensor):
        try:
            ts = torch.as_tensor(ts, dtype=torch.float64)
        except (TypeError, ValueError) as err:
            raise TimeGridError(f"{name} must be a 1-D sequence of times; got {type(ts).__name__}") from err
    if like is not None:
        ts = ts.to(device=like.device, dtype=torch.float64 if like.dtype == torch.float64 else torch.float32)
    if not ts.is_floating_point():
        ts = ts.to(torch.get_default_dtype())
    if ts.ndim != 1 or ts.numel() == 0:
        raise TimeGridError(f"{name} must be a non-empty 1-D tensor of times; got shape {tuple(ts.shape)}")
    if not bool(torch.isfinite(ts).all()):
        raise TimeGridError(f"{name} must be finite; got {ts.tolist()[:16]}")
    if ts.numel() > 1:
        diffs = ts[1:] - ts[:-1]
        if not (bool((diffs > 0).all()) or bool((diffs < 0).all())):
            raise TimeGridError(
                f"{name} must be strictly increasing or strictly decreasing; got {ts.tolist()[:16]}"
                + (" ..." if ts.numel() > 16 else "")
            )
    check_time_range(ts, name)
    return ts


def check_instance(obj: Any, base: type, name: str) -> Any:
    """Check that ``obj`` is an instance of ``base`` (catching a class passed by mistake).

    Raises:
        ComponentError: ``obj`` is a class, or an instance of something else.
    """
    if inspect.isclass(obj):
        hint = f" (did you mean {obj.__name__}()?)" if issubclass(obj, base) else ""
        raise ComponentError(
            f"{name} must be an instance of {base.__name__}; got the class {obj.__name__} itself{hint}"
        )
    if not isinstance(obj, base):
        raise ComponentError(f"{name} must be an instance of {base.__name__}; got {type(obj).__name__}")
    return obj
