"""Typed errors of :mod:`genflow.robustness` (each derives from a :mod:`genflow.errors` class)."""

from __future__ import annotations

from genflow.errors import ConfigError, GenflowError, ShapeError

__all__ = ["AttackConfigError", "ImageRangeError", "GlobalRNGDefenceError", "ShardMergeError", "ImageShapeError"]


class AttackConfigError(ConfigError):
    """An attack preset, budget, norm or evaluation setting is invalid (unknown preset, eps <= 0, ...)."""


class ImageRangeError(GenflowError, ValueError):
    """Images handed to an attack are outside ``[0, 1]`` (torchattacks clips to that range)."""


class ImageShapeError(ShapeError):
    """Images or labels have the wrong shape (not ``(n, C, H, W)``, or a channel count the model rejects)."""


class GlobalRNGDefenceError(GenflowError, RuntimeError):
    """A stochastic defence drew its noise from the global torch RNG.

    torchattacks' APGD, FAB and Square call ``torch.manual_seed`` before they run, which would fix
    such a defence's noise for the whole attack; a defence must draw from its own ``torch.Generator``.
    """


class ShardMergeError(GenflowError, ValueError):
    """Per-rank results do not cover every image exactly once, or disagree in their attacks or budgets."""
