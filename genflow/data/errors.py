"""Typed errors raised by :mod:`genflow.data`.

They derive from :class:`genflow.errors.GenflowError` and from the matching
built-in, so ``except FileNotFoundError`` or ``except ValueError`` keeps working.
Messages say what was expected and what was given, and for missing files where
they were looked for and how to get them.
"""

from __future__ import annotations

from genflow.errors import GenflowError

__all__ = ["DataNotFoundError", "DataIntegrityError", "DataOptionError"]


class DataNotFoundError(GenflowError, FileNotFoundError):
    """A dataset's files are not where they were expected (the message names the path and how to get them)."""


class DataIntegrityError(GenflowError, OSError):
    """A dataset's files exist but fail their integrity (checksum) check."""


class DataOptionError(GenflowError, ValueError):
    """A dataset option (split, size, value range, corruption kind or severity, count) is not an accepted value."""
