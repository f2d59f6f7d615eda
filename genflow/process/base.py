"""The :class:`Process` ABC: forward corruption between data (t=0) and prior (t=1)."""

from __future__ import annotations

from abc import ABC, abstractmethod

from torch import Tensor

from genflow.config import Configurable
from genflow.errors import ShapeError
from genflow.registry import Registry
from genflow.validation import check_state, check_time

__all__ = ["Process", "PROCESSES", "broadcast_time"]


def broadcast_time(coefficient: Tensor, x: Tensor) -> Tensor:
    """Reshape a per-sample coefficient of shape ``(batch,)`` to broadcast against ``x``."""
    return coefficient.reshape(coefficient.shape + (1,) * (x.ndim - coefficient.ndim))


class Process(Configurable, ABC):
    """Forward corruption ``q(x_t | x_0)`` with closed-form marginals.

    Convention: ``t = 0`` is data, ``t = 1`` is the prior (noise or the paired
    source). ``t_min`` / ``t_max`` bound the times a sampler should use (a
    process singular at an end point declares a safe margin there).
    """

    t_min: float = 0.0
    t_max: float = 1.0

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


PROCESSES: Registry[Process] = Registry("process", Process)
