"""The :class:`Process` ABC: forward corruption between data (t=0) and prior (t=1).

Every public method of a process that takes a time (a parameter named ``t`` or
``s``) checks it at the boundary: a time outside ``[0, 1]`` (or NaN) raises
:class:`~genflow.errors.TimeRangeError`. Subclasses get the check without
writing it: :class:`Process` wraps such methods when the subclass is created.
The check costs one device-to-host copy per outermost call (nested calls inside
a checked one skip it), and nothing inside
:func:`~genflow.validation.times_validated`, which solvers enter once their
grid is validated.
"""

from __future__ import annotations

import functools
import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

from torch import Tensor

from genflow.config import Configurable
from genflow.errors import ShapeError
from genflow.registry import Registry
from genflow.validation import check_state, check_time, check_time_range, times_are_validated, times_validated

__all__ = ["Process", "PROCESSES", "broadcast_time", "TIME_PARAMETERS"]

TIME_PARAMETERS: tuple[str, ...] = ("t", "s")
"""Parameter names that hold times; public process methods range-check them."""


def broadcast_time(coefficient: Tensor, x: Tensor) -> Tensor:
    """Reshape a per-sample coefficient of shape ``(batch,)`` to broadcast against ``x``."""
    return coefficient.reshape(coefficient.shape + (1,) * (x.ndim - coefficient.ndim))


def _checking_times(fn: Callable[..., Any], names: list[str]) -> Callable[..., Any]:
    """Wrap a method so that its time arguments are range-checked unless already validated."""
    params = list(inspect.signature(fn).parameters)
    positions = [(name, params.index(name)) for name in names]

    @functools.wraps(fn)
    def checked(*args: Any, **kwargs: Any) -> Any:
        if times_are_validated():
            return fn(*args, **kwargs)
        for name, index in positions:
            value = kwargs[name] if name in kwargs else (args[index] if index < len(args) else None)
            if value is not None:
                check_time_range(value, f"{type(args[0]).__name__}.{fn.__name__}: {name}")
        with times_validated():  # nested process calls need not check again
            return fn(*args, **kwargs)

    checked._checks_times = True  # type: ignore[attr-defined]
    return checked


def _wrap_time_methods(cls: type) -> None:
    for attr, fn in list(vars(cls).items()):
        if attr.startswith("_") or not inspect.isfunction(fn) or getattr(fn, "_checks_times", False):
            continue
        if getattr(fn, "__isabstractmethod__", False):
            continue
        names = [p for p in inspect.signature(fn).parameters if p in TIME_PARAMETERS]
        if names:
            setattr(cls, attr, _checking_times(fn, names))


class Process(Configurable, ABC):
    """Forward corruption ``q(x_t | x_0)`` with closed-form marginals.

    Convention: ``t = 0`` is data, ``t = 1`` is the prior (noise or the paired
    source). ``t_min`` / ``t_max`` bound the times a sampler should use (a
    process singular at an end point declares a safe margin there). Every
    public method's time arguments (``t``, ``s``) must lie in ``[0, 1]``.
    """

    t_min: float = 0.0
    t_max: float = 1.0

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _wrap_time_methods(cls)

    @abstractmethod
    def marginal(self, x0: Tensor, t: Tensor | float, *, x1: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Mean and standard deviation of ``q(x_t | x_0[, x_1])``.

        Args:
            x0: Data, shape ``(batch, *event_shape)``.
            t: Scalar or ``(batch,)`` times in ``[0, 1]``.
            x1: The paired end point, for processes between given end points
                (:class:`~genflow.process.bridge.BrownianBridge`); ``None`` otherwise.

        Returns:
            ``(mean, std)``; ``mean`` has ``x0``'s shape, ``std`` broadcasts to it.

        Raises:
            TimeRangeError: a time outside ``[0, 1]``.
        """

    def sample(self, x0: Tensor, t: Tensor | float, noise: Tensor, *, x1: Tensor | None = None) -> Tensor:
        """Draw ``x_t = mean + std * noise`` with caller-supplied standard normal ``noise``."""
        mean, std = self.marginal(x0, t, x1=x1)
        if noise.shape != x0.shape:
            raise ShapeError(f"noise must have x0's shape {tuple(x0.shape)}; got {tuple(noise.shape)}")
        return mean + std * noise

    def _time_for(self, x0: Tensor, t: Tensor | float) -> Tensor:
        check_state(x0, "x0")
        return check_time(t, x0.shape[0], like=x0)


_wrap_time_methods(Process)

PROCESSES: Registry[Process] = Registry("process", Process)
