"""Typed errors raised by genflow.

Every error a user can trigger with bad input derives from :class:`GenflowError`
and from the matching built-in (``ValueError``, ``TypeError``, ...), so code that
already catches the built-in keeps working. Messages state what was expected and
what was given.
"""

from __future__ import annotations

__all__ = [
    "GenflowError",
    "ShapeError",
    "DTypeError",
    "TimeGridError",
    "TimeRangeError",
    "NonFiniteError",
    "ComponentError",
    "UnknownComponentError",
    "RegistryError",
    "ConfigError",
    "ParameterizationError",
    "GeneratorRequiredError",
    "ProbabilityError",
    "LabelError",
    "UnknownArgumentError",
    "MissingArgumentError",
    "ToleranceError",
    "StepLimitError",
]


class GenflowError(Exception):
    """Base class of every error genflow raises on purpose."""


class ShapeError(GenflowError, ValueError):
    """A tensor has the wrong number of dimensions or the wrong size."""


class DTypeError(GenflowError, TypeError):
    """A tensor has a dtype the operation cannot use (e.g. an integer state)."""


class TimeGridError(GenflowError, ValueError):
    """A time grid is not 1-D, not strictly monotone, or not finite."""


class TimeRangeError(GenflowError, ValueError):
    """A time lies outside ``[0, 1]`` (t = 0 is data, t = 1 is noise)."""


class NonFiniteError(GenflowError, FloatingPointError):
    """NaN or Inf appeared while solving; the message names the time it appeared."""

    def __init__(self, message: str, *, time: float | None = None) -> None:
        super().__init__(message)
        self.time = time


class ComponentError(GenflowError, TypeError):
    """A component is of the wrong kind: a class given instead of an instance,
    or two components that cannot work together."""


class UnknownComponentError(GenflowError, LookupError):
    """A registry was asked for a name it does not hold."""

    def __str__(self) -> str:  # LookupError/KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class RegistryError(GenflowError, ValueError):
    """A registration is invalid (duplicate name, abstract class, wrong base)."""


class ConfigError(GenflowError, ValueError):
    """A configuration dict cannot be turned back into a component."""


class ParameterizationError(GenflowError, ValueError):
    """An unknown model parameterisation (expected eps, x0, v, score or velocity)."""


class GeneratorRequiredError(GenflowError, TypeError):
    """A random draw was asked for without an explicit ``torch.Generator`` (no hidden global RNG)."""


class ProbabilityError(GenflowError, ValueError):
    """A predictive distribution is not one: negative entries, rows that do not sum to 1, or non-finite values."""


class LabelError(GenflowError, ValueError):
    """Class labels are not integers in ``[0, num_classes)``."""


class UnknownArgumentError(ConfigError, TypeError):
    """A component, loader or recipe section got a keyword it does not accept; the message names the
    keyword and lists the accepted ones."""


class MissingArgumentError(ConfigError, TypeError):
    """A component, loader or recipe section lacks a required argument; the message names it."""
class ToleranceError(ConfigError):
    """A solver tolerance the state's dtype cannot resolve (below its machine epsilon)."""


class StepLimitError(GenflowError, RuntimeError):
    """An adaptive solver used up its step budget; ``time`` is how far it got."""

    def __init__(self, message: str, *, time: float | None = None) -> None:
        super().__init__(message)
        self.time = time
