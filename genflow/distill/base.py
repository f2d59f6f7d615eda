"""The :class:`Perturbation` ABC: how a distillation step moves its training inputs before asking the teachers.

Knowledge distillation of an ensemble on the training inputs alone transfers little of
the members' diversity, since on those inputs the members agree. A perturbation moves
each input ``x`` to ``x'`` (pixels kept in ``[0, 1]``) and the student is matched to the
teachers at ``x'``. A perturbation splits its randomness from its computation like an
objective: :meth:`Perturbation.draw` makes every random input (noise, the teacher
chosen for each example, the random projection) from the objective's generator, and
:meth:`Perturbation.perturb` is deterministic given those draws, so a resumed or
data-parallel run perturbs exactly as an uninterrupted one.

References:
    Nam et al. 2021, "Diversity Matters When Learning From Ensembles", NeurIPS (sec. 3, ODS and ConfODS for KD).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from genflow.config import Configurable
from genflow.errors import ComponentError, ConfigError
from genflow.registry import Registry

__all__ = ["Perturbation", "PERTURBATIONS", "DistillationError", "check_step"]


class DistillationError(ComponentError):
    """A student and its teachers that do not fit together (class counts, BatchEnsemble members vs teachers)."""


def check_step(name: str, value: object) -> float:
    """``value`` as a float ``>= 0``; raise :class:`ConfigError` otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not float(value) >= 0.0:
        raise ConfigError(f"{name} must be a number >= 0; got {value!r}")
    return float(value)


class Perturbation(Configurable, ABC):
    """Moves a batch of training images toward where the teachers should be queried.

    ``perturb`` returns a tensor with no autograd history (``requires_grad`` false): any input
    gradient it takes is taken with :func:`torch.autograd.grad` on a detached copy of ``x``, so no
    graph outlives the call and no parameter's ``.grad`` is touched. Pixels stay in ``[0, 1]``.

    Attributes:
        moves_inputs: False for the identity (the objective then reuses the student's clean forward pass).
    """

    moves_inputs: ClassVar[bool] = True

    @abstractmethod
    def draw(
        self,
        n: int,
        shape: tuple[int, ...],
        num_teachers: int,
        num_classes: int,
        generator: torch.Generator,
        *,
        dtype: torch.dtype,
        device: Any,
    ) -> dict[str, Tensor]:
        """Random inputs for ``n`` examples of per-example ``shape`` (leading dimension ``n`` each)."""

    @abstractmethod
    def perturb(self, x: Tensor, teachers: Sequence[nn.Module], draws: Mapping[str, Tensor]) -> Tensor:
        """The perturbed images ``x'`` (shaped like ``x``, in ``[0, 1]``, detached) for this batch's ``draws``."""


PERTURBATIONS: Registry[Perturbation] = Registry("perturbation", Perturbation)
