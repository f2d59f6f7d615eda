"""Training objectives of bridges: noise-prediction bridge matching and one-step distillation.

Both read batches of paired end points (``source``, ``target``, ``cond``; see
:func:`~genflow.bridge.training.bridge_pairs`) and leave the loss to the model, a
:class:`~genflow.bridge.Bridge`: :meth:`~genflow.bridge.Bridge.loss` and
:meth:`~genflow.bridge.Bridge.distillation_loss`. Every random input is drawn here,
from the Trainer's per-step generator: the time (a uniform the bridge maps to one
of its ``N`` grid times), the bridge noise and the temperature uniform.

References:
    Kim et al. 2024, "Fast Ensembling with Diffusion Schroedinger Bridge" (training and distillation).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor

from genflow.bridge.base import Bridge
from genflow.errors import ComponentError, ShapeError
from genflow.objectives.base import OBJECTIVES, Objective
from genflow.random import require_generator

__all__ = ["BridgeMatching", "BridgeDistillation"]


def _bridge(model: torch.nn.Module, where: str) -> Bridge:
    if not isinstance(model, Bridge):
        raise ComponentError(f"{where} trains a Bridge (single-process training); got {type(model).__name__}")
    return model


def _uniform(n: int, generator: torch.Generator, dtype: torch.dtype, device: Any) -> Tensor:
    return torch.rand(n, generator=generator, device=generator.device, dtype=dtype).to(device)


@OBJECTIVES.register("bridge_matching")
class BridgeMatching(Objective):
    """Noise-prediction training of a bridge on its own time grid (:meth:`Bridge.loss`).

    Draws, per example: ``time`` (uniform, mapped to ``n / N``, ``n`` in ``1..N``), ``noise`` ``(K,)`` standard
    normal, ``temperature`` (uniform, mapped by a DBN to ``2 + 0.4 Beta(1, 5)``).

    Args:
        random_temperature: Draw the source temperature per example (the DBN recipe); False trains at the test
            temperature only.
    """

    fields: ClassVar[tuple[str, ...]] = ("source", "target", "cond")

    def __init__(self, random_temperature: bool = True) -> None:
        self.random_temperature = bool(random_temperature)

    def draw(
        self, n: int, shapes: Mapping[str, tuple[int, ...]], generator: torch.Generator, *, dtype: torch.dtype,
        device: Any,
    ) -> dict[str, Tensor]:  # fmt: skip
        """``time`` ``(n,)``, ``noise`` ``(n, K)`` and (``random_temperature``) ``temperature`` ``(n,)``."""
        generator = require_generator(generator, f"{type(self).__name__}.draw")
        if len(shapes.get("source", ())) != 1:
            raise ShapeError(f"{type(self).__name__} needs a source field of per-example shape (K,); got {shapes}")
        noise = torch.randn((n, *shapes["source"]), generator=generator, device=generator.device, dtype=dtype)
        draws = {"time": _uniform(n, generator, dtype, device), "noise": noise.to(device)}
        if self.random_temperature:
            draws["temperature"] = _uniform(n, generator, dtype, device)
        return draws

    def loss(self, model: torch.nn.Module, batch: Mapping[str, Tensor], draws: Mapping[str, Tensor]) -> Tensor:
        """``model.loss(batch, draws)``."""
        return _bridge(model, type(self).__name__).loss(batch, draws)


@OBJECTIVES.register("bridge_distillation")
class BridgeDistillation(Objective):
    """One-step distillation of a multi-step bridge (:meth:`Bridge.distillation_loss`): the batch's ``target`` is
    the teacher's sample from ``source``; the student maps ``source`` to it in one call at ``t = 1``.

    Args:
        random_temperature: Also draw the source temperature (as in bridge matching); False (default) distils
            at the test temperature, the one the teacher's samples were drawn at.
    """

    fields: ClassVar[tuple[str, ...]] = ("source", "target", "cond")

    def __init__(self, random_temperature: bool = False) -> None:
        self.random_temperature = bool(random_temperature)

    def draw(
        self, n: int, shapes: Mapping[str, tuple[int, ...]], generator: torch.Generator, *, dtype: torch.dtype,
        device: Any,
    ) -> dict[str, Tensor]:  # fmt: skip
        """``temperature`` ``(n,)`` when ``random_temperature``; nothing otherwise."""
        generator = require_generator(generator, f"{type(self).__name__}.draw")
        return {"temperature": _uniform(n, generator, dtype, device)} if self.random_temperature else {}

    def loss(self, model: torch.nn.Module, batch: Mapping[str, Tensor], draws: Mapping[str, Tensor]) -> Tensor:
        """``model.distillation_loss(batch, draws)``."""
        return _bridge(model, type(self).__name__).distillation_loss(batch, draws)
