"""The :class:`Objective` ABC: one training loss per method.

An objective splits its randomness from its loss so that data-parallel training
draws the randomness for the global batch once and each process takes its
slice: :meth:`Objective.draw` makes the random inputs (times, noise) for ``n``
examples from an explicit generator, :meth:`Objective.loss` evaluates the loss
of a model on a batch with those draws.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import torch
from torch import Tensor

from genflow.config import Configurable
from genflow.registry import Registry

__all__ = ["Objective", "OBJECTIVES"]


class Objective(Configurable, ABC):
    """A training loss ``loss(model, x, cond, draws) -> scalar``."""

    @abstractmethod
    def draw(
        self, n: int, event_shape: tuple[int, ...], generator: torch.Generator, *, dtype: torch.dtype, device: Any
    ) -> dict[str, Tensor]:
        """Random inputs for ``n`` examples, each a tensor with leading dimension ``n``."""

    @abstractmethod
    def loss(self, model: torch.nn.Module, x: Tensor, cond: Any, draws: dict[str, Tensor]) -> Tensor:
        """Mean loss over the batch ``x`` (shape ``(n, *event_shape)``) with ``draws`` from :meth:`draw`."""


OBJECTIVES: Registry[Objective] = Registry("objective", Objective)
