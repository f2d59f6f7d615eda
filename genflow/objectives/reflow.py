"""Reflow (2-rectified flow), sequential reflow (SeqRF) and their k-step distillation, on teacher pairs.

A batch of pairs (see :class:`~genflow.reflow.pairs.PairDataset`) holds
``start = x_{tau_k}`` (noise side, time ``t_start = tau_k``), ``end = x_hat_{tau_{k+1}}``
(the teacher's solve to ``t_end = tau_{k+1}``) and the segment ``k``. With
``s ~ U[0, 1]``:

    x_s = (1 - s) end + s start,    tau(s) = t_end + s (t_start - t_end),
    L = || u(x_s, tau(s)) - (start - end) / (t_start - t_end) ||^2,

the straight-line velocity ``dx/dt`` of the segment (genflow's convention:
t = 0 data, t = 1 noise, so it matches :class:`~genflow.objectives.dsm.FlowMatching`'s
target ``z - x0`` and a 1-rectified-flow model plugs in as teacher and
initialisation). :class:`Reflow` calls ``model(x_s, tau)``; on full-trajectory
pairs (one segment) it is 2-rectified flow. :class:`SequentialReflow` calls
``model(x_s, tau, segment=k)`` (a segment-aware model, e.g.
:class:`~genflow.reflow.model.SegmentConditionedModel`).

With ``distill=True`` both fix ``s = 1``: the model learns the one-step map
of each segment, ``end = start - (t_start - t_end) u(start, t_start)``, i.e.
the k-step distilled sampler (one Euler step per segment, NFE = K) reproduces
the teacher's segment end points (the loss is the end-point error divided by
``(t_start - t_end)^2``).

References:
    Liu et al. 2023, "Flow Straight and Fast" (rectified flow), eq. (1) (the objective), sec. 2 (reflow,
    distillation); Yoon et al. 2024, "Sequential Flow Straightening for Generative Modeling" (SeqRF), sec. 3.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor

from genflow.errors import ConfigError
from genflow.objectives.base import OBJECTIVES, Objective
from genflow.process.interpolant import LinearInterpolant
from genflow.random import require_generator
from genflow.reflow.errors import SegmentSpecError
from genflow.reflow.segments import SegmentSpec

__all__ = ["PairObjective", "Reflow", "SequentialReflow", "segment_interpolation"]


def segment_interpolation(batch: Mapping[str, Tensor], s: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(x_s, tau(s), target)`` of the straight segment between a pair's end points.

    Shapes:
        batch["start"], batch["end"]: ``(b, *event)``; batch["t_start"], batch["t_end"], s: ``(b,)``.
    """
    start, end, t_start, t_end = batch["start"], batch["end"], batch["t_start"], batch["t_end"]
    grow = (-1, *([1] * (start.ndim - 1)))
    s_x = s.reshape(grow)
    x_s = (1 - s_x) * end + s_x * start  # this form is exact at both ends (s = 1 gives start bit for bit)
    tau = (1 - s) * t_end + s * t_start
    return x_s, tau, (start - end) / (t_start - t_end).reshape(grow)


class PairObjective(Objective):
    """Abstract: regression of a velocity model onto the straight segments of teacher pairs.

    Args:
        distill: Train only at ``s = 1`` (each segment's start): k-step distillation.

    Attributes:
        process: The :class:`~genflow.process.LinearInterpolant` the straight-line velocities belong to
            (recorded in the run's checkpoints, so ``load_trained`` and ``genflow reflow pairs`` rebuild it;
            a recipe with another process is refused).

    Raises:
        ConfigError: (in ``loss``) a model whose parameterisation is not ``velocity``.
    """

    fields: ClassVar[tuple[str, ...]] = ("start", "end", "t_start", "t_end")

    def __init__(self, distill: bool = False) -> None:
        self.distill = bool(distill)
        self.process = LinearInterpolant()

    @abstractmethod
    def _velocity(self, model: torch.nn.Module, x: Tensor, t: Tensor, batch: Mapping[str, Tensor]) -> Tensor:
        """The model's velocity at ``(x, t)`` for this batch's pairs."""

    def draw(
        self,
        n: int,
        shapes: Mapping[str, tuple[int, ...]],
        generator: torch.Generator,
        *,
        dtype: torch.dtype,
        device: Any,
    ) -> dict[str, Tensor]:
        """``s`` uniform on ``[0, 1]`` (ones when distilling), shape ``(n,)``."""
        generator = require_generator(generator, f"{type(self).__name__}.draw")
        s = torch.rand(n, generator=generator, dtype=dtype, device=generator.device).to(device)
        return {"s": torch.ones_like(s) if self.distill else s}

    def loss(self, model: torch.nn.Module, batch: Mapping[str, Tensor], draws: Mapping[str, Tensor]) -> Tensor:
        """Mean squared error between the model's velocity and the segment's straight-line velocity."""
        kind = getattr(model, "parameterization", None)
        if kind != "velocity":
            raise ConfigError(f"{type(self).__name__} trains a velocity model; got parameterization {kind!r}")
        x_s, tau, target = segment_interpolation(batch, draws["s"])
        return (self._velocity(model, x_s, tau, batch) - target).pow(2).flatten(1).mean(1).mean()

    def metrics(self, model: torch.nn.Module, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """``endpoint_error``: squared error (per coordinate) of one Euler step across each pair's segment."""
        start, length = batch["start"], batch["t_start"] - batch["t_end"]
        velocity = self._velocity(model, start, batch["t_start"], batch)
        one_step = start - length.reshape(-1, *([1] * (start.ndim - 1))) * velocity
        return {"endpoint_error": (one_step - batch["end"]).pow(2).flatten(1).mean(1)}


@OBJECTIVES.register("reflow")
class Reflow(PairObjective):
    """Reflow on teacher pairs with a plain velocity model ``model(x, t)``; 2-rectified flow on full-trajectory
    pairs, and with ``distill=True`` the K-step distillation of plain reflow (the baseline for SeqRF).
    """

    def _velocity(self, model, x, t, batch):
        return model(x, t)


@OBJECTIVES.register("seqrf")
class SequentialReflow(PairObjective):
    """Sequential reflow: the segment index of each pair reaches a segment-aware model as ``segment=``;
    with ``distill=True`` the K-step distillation of SeqRF.

    Raises:
        SegmentSpecError: (in ``loss``/``metrics``) pairs whose times are not the boundaries of the model's
            segments (made with another K), for a model that declares a :class:`SegmentSpec`.
    """

    fields: ClassVar[tuple[str, ...]] = ("start", "end", "t_start", "t_end", "segment")

    def _velocity(self, model, x, t, batch):
        _check_pair_segments(model, batch)
        return model(x, t, segment=batch["segment"])


def _check_pair_segments(model: torch.nn.Module, batch: Mapping[str, Tensor]) -> None:
    """Refuse pairs whose segment times are not the model's segment boundaries (pairs made with another K).

    Raises:
        SegmentSpecError: a pair's ``(t_start, t_end)`` differ from the model's boundaries of its segment,
            or its segment index is out of the model's range.
    """
    spec = getattr(model, "segments", None)
    if not isinstance(spec, SegmentSpec):
        return  # a segment-aware model that declares no SegmentSpec checks its own segments
    segment, t_start, t_end = batch["segment"], batch["t_start"], batch["t_end"]
    spec.check_index(segment)
    bounds = torch.tensor(spec.boundaries, dtype=torch.float64).to(device=t_start.device, dtype=t_start.dtype)
    if not bool(((bounds[segment] == t_start) & (bounds[segment + 1] == t_end)).all()):
        raise SegmentSpecError(
            f"the pairs' segment times do not match the model's segments {spec!r}: were the pairs made with "
            "another number of segments (genflow reflow pairs --segments)?"
        )
