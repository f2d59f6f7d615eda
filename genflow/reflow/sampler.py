"""The segment-restart sampler: N Euler or Heun steps split over K segments, restarting at each boundary.

SeqRF samples segment by segment: within segment ``k`` (``[tau_{k+1}, tau_k]``)
the model is evaluated as segment ``k``'s velocity, and at ``tau_{k+1}`` the
solve restarts with segment ``k + 1``. The grid (:class:`SegmentGrid`) puts
every boundary on a grid point and splits the steps over the segments (the
remainder to the first ones); the solver cuts the grid at the boundaries and
runs a fixed-step method on each piece, with the model pinned to that piece's
segment (:class:`SegmentVelocity`). With one segment it is the fixed-step
method itself; the distilled SeqRF sampler is one Euler step per segment
(NFE = K).

References:
    Yoon et al. 2024, "Sequential Flow Straightening for Generative Modeling" (SeqRF), sec. 3 (sampling);
    Liu et al. 2023, "Flow Straight and Fast" (rectified flow).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

from genflow.errors import ComponentError, ConfigError
from genflow.reflow.errors import SegmentSpecError
from genflow.reflow.segments import SegmentGrid, SegmentSpec
from genflow.sampling import ModelDenoiser
from genflow.solver.base import SOLVERS, Solver
from genflow.solver.ode import Euler, Heun

__all__ = ["SegmentField", "SegmentVelocity", "SegmentRestartSolver", "SegmentEuler", "SegmentHeun"]

Field = Callable[[Tensor, Tensor], Tensor]


@runtime_checkable
class SegmentField(Protocol):
    """A velocity field that can be evaluated as one segment's velocity: ``on_segment(k)(x, t)``."""

    segments: SegmentSpec

    def __call__(self, x: Tensor, t: Tensor) -> Tensor: ...

    def on_segment(self, k: int) -> Field: ...


class _SegmentPinned:
    """A segment-aware model seen as a plain ``model(x, t, cond=...)`` of one fixed segment."""

    def __init__(self, model: Any, segment: int) -> None:
        self.model, self.segment = model, segment
        self.parameterization = model.parameterization

    def __call__(self, x: Tensor, t: Tensor, *, cond: Any = None) -> Tensor:
        return self.model(x, t, cond=cond, segment=self.segment)


class SegmentVelocity:
    """The probability-flow velocity of a segment-aware model, per segment.

    Called as ``field(x, t)`` it lets the model pick the segment from ``t``; ``on_segment(k)`` gives the
    velocity of segment ``k`` at any ``t`` (Heun's last evaluation in a segment sits on the boundary that
    also starts the next one). Every call counts on the denoiser's ``calls``.

    Args:
        denoiser: A :class:`~genflow.sampling.ModelDenoiser` whose model declares ``segments``.

    Raises:
        ComponentError: the model declares no :class:`SegmentSpec` ``segments``.
    """

    def __init__(self, denoiser: ModelDenoiser) -> None:
        segments = getattr(denoiser.model, "segments", None)
        if not isinstance(segments, SegmentSpec):
            raise ComponentError(
                f"a segment-aware model declares segments (a SegmentSpec); {type(denoiser.model).__name__} does not"
            )
        self.denoiser, self.segments = denoiser, segments
        self._pinned = [
            ModelDenoiser(denoiser.process, _SegmentPinned(denoiser.model, k), denoiser.cond)
            for k in range(segments.num_segments)
        ]

    def __call__(self, x: Tensor, t: Tensor) -> Tensor:
        return self.denoiser.velocity(x, t)

    def on_segment(self, k: int) -> Field:
        """The velocity of segment ``k``."""
        self.segments.check_index(k)
        pinned = self._pinned[k]

        def velocity(x: Tensor, t: Tensor) -> Tensor:
            self.denoiser.calls += 1
            return pinned.velocity(x, t)

        return velocity


class SegmentRestartSolver(Solver):
    """Abstract: a fixed-step method run piece by piece between segment boundaries.

    ``ts`` must contain every boundary strictly inside its range (a :class:`SegmentGrid` does, and a
    :class:`~genflow.sampling.Sampler` given no ``grid=`` uses ``SegmentGrid(segments)``); the solver
    runs :attr:`stepper` over each piece, giving a :class:`SegmentField` its piece's segment.
    A leaf declares ``stepper`` (a fixed-step solver class) and the matching numerics.

    Args:
        segments: A :class:`SegmentSpec`, a number ``K`` of uniform segments, or a list of boundaries.
        step_size: Passed to the stepper (steps of at most this size; None: step over ``ts``).

    Raises:
        SegmentSpecError: a bad segment specification.
        ConfigError: a bad ``step_size``.
    """

    kind = "ode"

    @property
    @abstractmethod
    def stepper(self) -> type[Solver]:
        """The fixed-step solver run on each piece (a leaf sets it as a class attribute)."""

    def __init__(self, segments: SegmentSpec | int | Sequence[float] = 1, step_size: float | None = None) -> None:
        self.segments = SegmentSpec.recorded(self, segments)
        if step_size is not None and not (isinstance(step_size, (int, float)) and step_size > 0):
            raise ConfigError(f"step_size must be a positive float or None (step over ts); got {step_size!r}")
        self.step_size = step_size
        self._stepper = self.stepper(step_size=step_size)
        self.default_grid = SegmentGrid(self.segments)  # per instance: a Sampler without grid= restarts here too

    def field_from(self, denoiser: Any) -> Any:
        """:class:`SegmentVelocity` for a segment-aware model, else the model's velocity."""
        if isinstance(getattr(denoiser.model, "segments", None), SegmentSpec):
            return SegmentVelocity(denoiser)
        return denoiser.velocity

    def _pieces(self, ts: Tensor) -> list[tuple[int, int, int]]:
        """``(first index, last index, segment)`` of each piece of ``ts`` between boundaries."""
        inner = torch.tensor(self.segments.boundaries[1:-1], dtype=ts.dtype, device=ts.device)
        inner = inner[(inner > ts.min()) & (inner < ts.max())]
        cuts = []
        for boundary in inner:
            hit = (ts == boundary).nonzero()
            if hit.numel() == 0:
                raise SegmentSpecError(
                    f"{type(self).__name__} restarts at every segment boundary, so the grid must contain "
                    f"t={float(boundary):.6g}; got {ts.tolist()}: build it with SegmentGrid({self.segments!r})"
                )
            cuts.append(int(hit[0, 0]))
        edges = [0, *sorted(cuts), ts.numel() - 1]
        mids = torch.stack([(ts[a] + ts[b]) / 2 for a, b in zip(edges[:-1], edges[1:], strict=False)])
        segments = self.segments.segment_of(mids).tolist()
        return [(a, b, k) for (a, b), k in zip(zip(edges[:-1], edges[1:], strict=False), segments, strict=True)]

    def _solve(self, field, x, ts, *, generator, return_trajectory):
        if isinstance(field, SegmentField) and field.segments != self.segments:
            raise ComponentError(f"the model's segments {field.segments!r} differ from the solver's {self.segments!r}")
        states, nfe = [x.unsqueeze(0)], 0
        for first, last, k in self._pieces(ts):
            piece_field = field.on_segment(k) if isinstance(field, SegmentField) else field
            sol = self._stepper.solve(piece_field, x, ts[first : last + 1], return_trajectory=return_trajectory)
            x, nfe = sol.x, nfe + sol.nfe
            states.append(sol.trajectory[1:] if return_trajectory else x.unsqueeze(0))
        trajectory = torch.cat(states) if return_trajectory else None
        return x, trajectory, nfe


@SOLVERS.register("segment_euler")
class SegmentEuler(SegmentRestartSolver):
    """Euler steps restarting at every segment boundary, order 1 (SeqRF's sampler; one step per segment
    is the distilled sampler, NFE = K)."""

    stepper = Euler
    order = 1
    nfe_per_step = 1


@SOLVERS.register("segment_heun")
class SegmentHeun(SegmentRestartSolver):
    """Heun steps restarting at every segment boundary, order 2 (2 NFE per step)."""

    stepper = Heun
    order = 2
    nfe_per_step = 2
