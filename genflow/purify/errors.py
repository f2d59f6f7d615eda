"""Typed errors of the purifiers and the purified classifier."""

from __future__ import annotations

from genflow.errors import GenflowError, ShapeError

__all__ = ["PixelRangeError", "ChannelError", "GradientModeError"]


class PixelRangeError(GenflowError, ValueError):
    """An image given to a purifier has pixels outside ``[0, 1]`` (or NaN)."""


class ChannelError(ShapeError):
    """An image given to a purifier has the wrong number of channels (or the wrong size)."""


class GradientModeError(GenflowError, ValueError):
    """A gradient mode outside ``full``, ``surrogate`` and ``bpda``."""
