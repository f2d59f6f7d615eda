"""Time segments for sequential reflow: boundaries ``1 = tau_0 > tau_1 > ... > tau_K = 0`` and their time grid.

Segment ``k`` is the interval ``[tau_{k+1}, tau_k]`` (``k = 0`` touches the
noise at ``t = 1``, ``k = K - 1`` the data at ``t = 0``). SeqRF's uniform
boundaries are ``tau_k = 1 - k / K``. When only a time is known, it belongs to
the segment whose noise-side end it does not exceed: ``t`` in
``(tau_{k+1}, tau_k]`` is in segment ``k`` (``t = 0`` in the last one). That is
where an Euler step starting at a boundary evaluates the model, so a plain
Euler solver on a :class:`SegmentGrid` restarts correctly; solvers that also
evaluate at a step's data-side end (Heun) name the segment explicitly (see
:mod:`genflow.reflow.sampler`).

References:
    Yoon et al. 2024, "Sequential Flow Straightening for Generative Modeling" (SeqRF), sec. 3.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from genflow.config import Configurable
from genflow.errors import TimeGridError
from genflow.process.gaussian import GaussianProcess
from genflow.reflow.errors import SegmentSpecError
from genflow.solver.grids import TIME_GRIDS, TimeGrid

__all__ = ["SegmentSpec", "SegmentGrid", "split_steps"]


class SegmentSpec(Configurable):
    """The boundaries of ``K`` time segments, decreasing from 1 (noise) to 0 (data).

    Args:
        boundaries: ``K + 1`` strictly decreasing times, the first 1 and the last 0.

    Raises:
        SegmentSpecError: fewer than two boundaries, ends other than 1 and 0, or not strictly decreasing.
    """

    def __init__(self, boundaries: Sequence[float]) -> None:
        try:
            values = [float(b) for b in boundaries]
        except (TypeError, ValueError):
            raise SegmentSpecError(f"segment boundaries must be a sequence of floats; got {boundaries!r}") from None
        if len(values) < 2:
            raise SegmentSpecError(f"need at least one segment (two boundaries 1 and 0); got boundaries {values}")
        if values[0] != 1.0 or values[-1] != 0.0:
            raise SegmentSpecError(f"segment boundaries must run from 1 (noise) to 0 (data); got {values}")
        if any(not hi > lo for hi, lo in zip(values[:-1], values[1:], strict=False)):
            raise SegmentSpecError(f"segment boundaries must be strictly decreasing; got {values}")
        self._boundaries = tuple(values)

    @classmethod
    def uniform(cls, num_segments: int) -> SegmentSpec:
        """SeqRF's boundaries ``tau_k = 1 - k / K``, ``k = 0..K``.

        Raises:
            SegmentSpecError: ``num_segments`` is not an int >= 1.
        """
        if not isinstance(num_segments, int) or isinstance(num_segments, bool) or num_segments < 1:
            raise SegmentSpecError(f"the number of segments K must be an int >= 1; got {num_segments!r}")
        return cls([1.0 - k / num_segments for k in range(num_segments)] + [0.0])

    @classmethod
    def of(cls, segments: Any) -> SegmentSpec:
        """A spec from a spec, a number of uniform segments, a list of boundaries or a spec's config dict.

        Raises:
            SegmentSpecError: anything else, or an invalid count or list.
        """
        if isinstance(segments, SegmentSpec):
            return segments
        if isinstance(segments, int) and not isinstance(segments, bool):
            return cls.uniform(segments)
        if isinstance(segments, (list, tuple)):
            return cls(segments)
        if isinstance(segments, dict):
            return cls.from_config(segments)
        raise SegmentSpecError(
            f"segments must be a SegmentSpec, a number of segments K >= 1 or a list of boundaries; got {segments!r}"
        )

    @classmethod
    def recorded(cls, owner: Configurable, segments: Any) -> SegmentSpec:
        """:meth:`of`, for a component's ``segments`` argument: a spec (or its config) given there is recorded
        in ``owner``'s config as its boundaries, a list JSON holds and :meth:`of` reads back.

        Raises:
            SegmentSpecError: as :meth:`of`.
        """
        spec = cls.of(segments)
        if isinstance(segments, (SegmentSpec, dict)):
            owner._config_args["segments"] = list(spec.boundaries)
        return spec

    @property
    def num_segments(self) -> int:
        """``K``."""
        return len(self._boundaries) - 1

    @property
    def boundaries(self) -> tuple[float, ...]:
        """``(tau_0 = 1, ..., tau_K = 0)``."""
        return self._boundaries

    def interval(self, k: int) -> tuple[float, float]:
        """``(tau_k, tau_{k+1})``: segment ``k``'s noise-side and data-side ends.

        Raises:
            SegmentSpecError: ``k`` not in ``0..K-1``.
        """
        self.check_index(k)
        return self._boundaries[k], self._boundaries[k + 1]

    def check_index(self, k: Any) -> None:
        """Raise :class:`SegmentSpecError` unless ``k`` (an int or an integer tensor) is in ``0..K-1``."""
        if isinstance(k, Tensor):
            if k.dtype.is_floating_point or k.dtype == torch.bool:
                raise SegmentSpecError(f"segment indices must be an integer tensor; got dtype {k.dtype}")
            bad = k.numel() > 0 and (int(k.min()) < 0 or int(k.max()) >= self.num_segments)
        else:
            bad = not isinstance(k, int) or isinstance(k, bool) or not 0 <= k < self.num_segments
        if bad:
            raise SegmentSpecError(f"segment index must be in 0..{self.num_segments - 1}; got {k!r}")

    def segment_of(self, t: Tensor) -> Tensor:
        """The segment of each time: ``k`` with ``tau_{k+1} < t <= tau_k`` (``t = 0`` is in segment ``K - 1``).

        The boundaries are compared in ``t``'s dtype, so a boundary computed in float64 and stored in
        float32 (as a sampler's grid is) still falls in the segment it starts.

        Shapes:
            t: any; output: ``t``'s shape, ``int64``.
        """
        inner = torch.tensor(self._boundaries[1:-1], dtype=t.dtype, device=t.device)
        return (t.unsqueeze(-1) <= inner).sum(-1).to(torch.int64)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SegmentSpec) and other._boundaries == self._boundaries

    def __hash__(self) -> int:
        return hash(self._boundaries)

    def __repr__(self) -> str:
        return f"SegmentSpec({list(self._boundaries)})"


def split_steps(steps: int, pieces: int) -> list[int]:
    """``steps`` split over ``pieces`` as evenly as possible, the remainder to the first pieces.

    Raises:
        TimeGridError: ``steps < pieces`` (every piece needs a step).
    """
    if pieces < 1 or steps < pieces:
        raise TimeGridError(f"need at least one step per segment: {pieces} segment(s), got steps={steps}")
    base, extra = divmod(steps, pieces)
    return [base + (1 if i < extra else 0) for i in range(pieces)]


@TIME_GRIDS.register("segments")
class SegmentGrid(TimeGrid):
    """``steps`` uniform steps split over the segments, with every boundary a grid point.

    The segments overlapping ``[t_end, t_start]`` share the steps (the remainder to the first,
    noise-side ones) and each is cut into equal steps, so a solver over this grid restarts at every
    boundary. With one segment it is the uniform grid.

    Args:
        segments: A :class:`SegmentSpec`, a number ``K`` of uniform segments, or a list of boundaries.

    Raises:
        SegmentSpecError: a bad segment specification.
    """

    def __init__(self, segments: SegmentSpec | int | Sequence[float] = 1) -> None:
        self.segments = SegmentSpec.recorded(self, segments)

    def _grid(self, process: GaussianProcess, steps: int, t_start: float, t_end: float) -> Tensor:
        bounds = self.segments.boundaries
        pieces = [
            (min(hi, t_start), max(lo, t_end))
            for hi, lo in zip(bounds[:-1], bounds[1:], strict=False)
            if min(hi, t_start) > max(lo, t_end)
        ]
        parts = [torch.tensor([t_start], dtype=torch.float64)]
        for (hi, lo), count in zip(pieces, split_steps(steps, len(pieces)), strict=True):
            piece = hi + (lo - hi) * torch.linspace(0.0, 1.0, count + 1, dtype=torch.float64)
            piece[-1] = lo  # the boundary exactly, so it matches SegmentSpec.boundaries bit for bit
            parts.append(piece[1:])
        return torch.cat(parts)
