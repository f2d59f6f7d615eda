"""Type and range checks of the :class:`~genflow.train.Trainer`'s arguments.

Every argument is checked before anything is built, so a bad setting fails at
construction with a :class:`ConfigError` naming the argument, what it must be
and what was given. ``bool`` is refused where an integer is expected
(``steps=True`` is a mistake, not one step), and integral floats (``1e3``) are
refused too: a count is an ``int``.
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Sequence
from typing import Any

from genflow.errors import ConfigError

__all__ = ["check_int", "check_float", "check_bool", "check_betas", "check_run_info"]


def check_int(name: str, value: Any, minimum: int) -> int:
    """An ``int >= minimum`` (numpy integers accepted, bools refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ConfigError(f"{name} must be an int >= {minimum}; got {value!r}")
    return int(value)


def check_float(
    name: str, value: Any, low: float, high: float, *, low_open: bool = False, high_open: bool = True
) -> float:
    """A finite real number in the interval ``[low, high)`` (ends open or closed as asked; bools refused)."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not ok:
        interval = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        raise ConfigError(f"{name} must be a finite number in {interval}; got {value!r}")
    return float(value)


def check_bool(name: str, value: Any) -> bool:
    """A ``bool`` (not ``0``/``1`` or a string)."""
    if not isinstance(value, bool):
        raise ConfigError(f"{name} must be True or False; got {value!r}")
    return value


def check_betas(value: Any) -> tuple[float, float]:
    """AdamW's ``(beta1, beta2)``, each in ``[0, 1)``."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != 2:
        raise ConfigError(f"betas must be two numbers (beta1, beta2) in [0, 1); got {value!r}")
    return check_float("betas[0]", value[0], 0.0, 1.0), check_float("betas[1]", value[1], 0.0, 1.0)


def check_run_info(value: Any) -> dict[str, Any]:
    """A JSON-able dict (or None, giving ``{}``) to store under ``"run"`` in every checkpoint."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"run_info must be a dict of JSON values or None; got {type(value).__name__}")
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"run_info must hold only JSON values (str, finite numbers, lists, dicts): {err}") from None
    return dict(value)
