"""Checks at the boundary: every public entry validates its inputs with these.

Each helper raises a typed error from :mod:`genflow.errors` whose message says
what was expected and what was given. None of them synchronises a GPU except
where stated (checks on values, not shapes, need one device-to-host copy).
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor

from genflow.errors import ComponentError, ConfigError, DTypeError, ShapeError, TimeGridError, TimeRangeError

__all__ = [
    "MAX_STEPS",
    "check_state",
    "check_time",
    "check_time_range",
    "check_time_grid",
    "check_instance",
    "check_steps",
    "check_float_dtype",
    "check_device",
    "times_validated",
    "times_are_validated",
]

MAX_STEPS = 100_000
"""Largest number of grid steps a sampler or time grid accepts (a larger request is almost surely a typo)."""

_STATE = threading.local()


@contextmanager
def times_validated() -> Iterator[None]:
    """Declare that every time passed to a process inside this block was already range-checked.

    Process methods check their times on every public call (one device-to-host
    copy each); a solver validates its grid once and runs its loop inside this
    block so that the model calls it makes skip the per-call check. Nested
    blocks are allowed; the state is per thread.
    """
    _STATE.depth = getattr(_STATE, "depth", 0) + 1
    try:
        yield
    finally:
        _STATE.depth -= 1


def times_are_validated() -> bool:
    """Whether the caller is inside :func:`times_validated` (then range checks are skipped)."""
    return getattr(_STATE, "depth", 0) > 0


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


def check_time_range(t: Tensor | float, name: str = "t") -> None:
    """Raise :class:`TimeRangeError` unless every entry of ``t`` is a finite time in ``[0, 1]``.

    A Python number costs nothing; a tensor costs one reduction and one
    device-to-host copy (NaN propagates through the min/max and fails the test).
    """
    if isinstance(t, Tensor):
        if t.numel() == 0:
            return
        lo_t, hi_t = torch.aminmax(t.detach().reshape(-1))
        lo, hi = float(lo_t), float(hi_t)
    else:
        try:
            lo = hi = float(t)
        except (TypeError, ValueError) as err:
            raise TimeRangeError(f"{name} must be a time in [0, 1]; got {type(t).__name__}") from err
    if not (0.0 <= lo and hi <= 1.0):  # False for NaN too
        if lo != lo or hi != hi:
            raise TimeRangeError(f"{name} must be finite and in [0, 1]; got NaN")
        raise TimeRangeError(f"{name} must lie in [0, 1] (t=0 data, t=1 noise); got values in [{lo:.6g}, {hi:.6g}]")


def _grid_is_valid(ts: Tensor) -> bool:
    """Whether a non-empty 1-D grid is strictly monotone (or one point) and inside ``[0, 1]``.

    One device-to-host copy of the (short) grid, then plain Python comparisons, which
    cost less than a chain of tensor reductions; NaN fails every comparison.
    """
    values = ts.detach().tolist()
    if not all(0.0 <= v <= 1.0 for v in values):
        return False
    pairs = list(zip(values[:-1], values[1:], strict=True))
    return all(a < b for a, b in pairs) or all(a > b for a, b in pairs)


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
    if _grid_is_valid(ts):  # the usual case costs one device-to-host copy; a failure is diagnosed below
        return ts
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


def check_steps(steps: Any, name: str = "steps") -> int:
    """Check a step count: an ``int`` in ``[1, MAX_STEPS]`` (checked before anything is allocated).

    Raises:
        TimeGridError: not an int (``bool`` included), below 1 or above :data:`MAX_STEPS`.
    """
    if isinstance(steps, bool) or not isinstance(steps, int):
        raise TimeGridError(f"{name} must be an integer in [1, {MAX_STEPS}]; got {type(steps).__name__} {steps!r}")
    if not 1 <= steps <= MAX_STEPS:
        raise TimeGridError(f"{name} must be an integer in [1, {MAX_STEPS}]; got {steps}")
    return steps


def check_float_dtype(dtype: Any, name: str = "dtype") -> torch.dtype:
    """Check that ``dtype`` is a floating-point ``torch.dtype``.

    Raises:
        DTypeError: not a ``torch.dtype``, or not floating point (e.g. ``torch.int64``).
    """
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise DTypeError(f"{name} must be a floating-point torch.dtype (e.g. torch.float32); got {dtype!r}")
    return dtype


def check_device(device: Any, name: str = "device") -> torch.device:
    """Parse ``device`` and refuse devices that hold no data.

    Raises:
        ConfigError: not a device, an unknown device string, or ``meta``.
    """
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ConfigError(
            f"{name} must be a torch.device or a device string like 'cpu' or 'cuda:0'; got {device!r}"
        ) from err
    if parsed.type == "meta":
        raise ConfigError(f"{name} 'meta' holds no data, so nothing can be sampled on it; use 'cpu' or an accelerator")
    return parsed
