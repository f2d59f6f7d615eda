"""Typed errors raised by :mod:`genflow.reflow`.

They derive from :class:`genflow.errors.GenflowError` and from the matching
built-in, so ``except ValueError`` keeps working. Messages say what was
expected and what was given.
"""

from __future__ import annotations

from genflow.errors import ConfigError, GenflowError

__all__ = ["SegmentSpecError", "PairShardError"]


class SegmentSpecError(ConfigError):
    """A segment specification is invalid: fewer than one segment, boundaries that do not decrease from 1 to 0,
    a segment index out of range, or a time grid that does not restart at the segment boundaries."""


class PairShardError(GenflowError, ValueError):
    """A pair shard on disk has the wrong keys, shapes, dtypes or metadata, or was made with other settings."""
