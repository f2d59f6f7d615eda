"""The :class:`ScoreModel` ABC: a network predicting in a declared parameterisation."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from torch import Tensor, nn

from genflow.config import Configurable
from genflow.registry import Registry

__all__ = ["ScoreModel", "MODELS"]


class ScoreModel(Configurable, nn.Module, ABC):
    """``forward(x, t, *, cond=None, exit=None)`` predicting in ``parameterization``.

    Subclasses declare ``parameterization`` (one of ``eps``, ``x0``, ``v``,
    ``score``, ``velocity``; a class attribute, or an instance attribute set in
    ``__init__``). Backbones that support early exit report ``num_blocks`` and
    accept ``exit`` (blocks to run: an int, or one per sample); others ignore it.

    Shapes:
        x: ``(batch, *event_shape)``; t: ``(batch,)``; output: ``x``'s shape.
    """

    parameterization: str
    num_blocks: int | None = None

    def __init__(self) -> None:
        nn.Module.__init__(self)

    @abstractmethod
    def forward(self, x: Tensor, t: Tensor, *, cond: Any = None, exit: Any = None) -> Tensor:
        """Predict at noisy state ``x`` and times ``t``."""


MODELS: Registry[ScoreModel] = Registry("model", ScoreModel)
