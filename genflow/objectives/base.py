"""The :class:`Objective` ABC: one training loss per method, over batches of named tensors.

An objective splits its randomness from its loss so that data-parallel training
draws the randomness for the global batch once and each process takes its
slice: :meth:`Objective.draw` makes the random inputs (times, noise) for ``n``
examples from an explicit generator, :meth:`Objective.loss` evaluates the loss
of a model on a batch with those draws.

A batch is a mapping ``{field: tensor}`` with the examples along the leading
dimension (see :mod:`genflow.train.batches` for how datasets name their
fields); an objective declares the fields it reads in :attr:`Objective.fields`,
which the :class:`~genflow.train.Trainer` checks against the dataset before
the first step.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor

from genflow.config import Configurable
from genflow.registry import Registry

__all__ = ["Objective", "OBJECTIVES"]


class Objective(Configurable, ABC):
    """A training loss ``loss(model, batch, draws) -> scalar`` over a batch of named tensors.

    Attributes:
        fields: The batch fields :meth:`loss` reads (a class attribute, or set per instance when it
            depends on the arguments, as ``DenoisingScoreMatching(cond_field="label")`` does).
    """

    fields: ClassVar[tuple[str, ...]] = ("x",)

    @abstractmethod
    def draw(
        self,
        n: int,
        shapes: Mapping[str, tuple[int, ...]],
        generator: torch.Generator,
        *,
        dtype: torch.dtype,
        device: Any,
    ) -> dict[str, Tensor]:
        """Random inputs for ``n`` examples.

        Args:
            n: Number of examples (the global batch in data-parallel training).
            shapes: Per-example shape of every batch field, e.g. ``{"x": (1, 8, 8), "label": ()}``.
            generator: The only source of randomness (the Trainer's is a CPU generator seeded by
                ``(seed, step)``).
            dtype: Floating dtype of the draws (the model's parameter dtype).
            device: Where to put the draws.

        Returns:
            Tensors with leading dimension ``n`` (the Trainer slices them per process).
        """

    @abstractmethod
    def loss(self, model: torch.nn.Module, batch: Mapping[str, Tensor], draws: Mapping[str, Tensor]) -> Tensor:
        """Mean loss of ``model`` over ``batch`` (fields of leading dimension ``b``) with this batch's ``draws``."""

    def metrics(self, model: torch.nn.Module, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Per-example validation metrics, each of shape ``(b,)`` (none by default).

        The Trainer averages them over its validation set (EMA model if any, eval mode, no grad) and
        logs the means as ``val_<name>``. They must not depend on hidden randomness.
        """
        return {}


OBJECTIVES: Registry[Objective] = Registry("objective", Objective)
