"""Hand-made exit schedules: full depth, staircase, linear in t, and an explicit table.

References:
    Moon et al. 2024, "A Simple Early Exiting Framework for Accelerated Sampling in
    Diffusion Models" (ASE), sec. 3 and the released DiT-XL/2 schedule
    (``[28, 28, 24, 24, 20, 20, 16, 16, 12, 12]`` blocks over 10 equal bins of t).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Integral, Real

from genflow.errors import ComponentError, ConfigError
from genflow.exit.base import EXIT_POLICIES, ExitPolicy, ExitSchedule, check_edges, check_num_blocks, equal_edges

__all__ = ["FullExit", "StaircaseExit", "LinearExit", "TableExit", "ASE_DIT_XL_DEPTHS"]

ASE_DIT_XL_DEPTHS: tuple[int, ...] = (28, 28, 24, 24, 20, 20, 16, 16, 12, 12)
"""The released ASE schedule for the 28-block DiT-XL/2: blocks kept per tenth of ``[0, 1]`` (bin 0 at t = 0)."""


def _depth_list(depths: Sequence[int], owner: str) -> list[int]:
    values = list(depths) if isinstance(depths, Sequence) and not isinstance(depths, str) else None
    if not values or any(not isinstance(d, Integral) or isinstance(d, bool) or d < 0 for d in values):
        raise ConfigError(f"{owner}: depths must be a non-empty list of ints >= 0; got {depths!r}")
    return [int(d) for d in values]


def _fraction_list(fractions: Sequence[float], owner: str) -> list[float]:
    values = list(fractions) if isinstance(fractions, Sequence) and not isinstance(fractions, str) else None
    if not values or any(not isinstance(f, Real) or isinstance(f, bool) or not 0.0 <= f <= 1.0 for f in values):
        raise ConfigError(f"{owner}: fractions must be a non-empty list of numbers in [0, 1]; got {fractions!r}")
    return [float(f) for f in values]


def check_non_increasing(values: Sequence[float], owner: str) -> None:
    """Raise unless ``values`` never grow (an exit schedule keeps fewer blocks as ``t`` nears noise).

    Raises:
        ConfigError: some value is larger than the one before it.
    """
    rises = [i for i in range(1, len(values)) if values[i] > values[i - 1]]
    if rises:
        i = rises[0]
        raise ConfigError(
            f"{owner}: depths must be non-increasing in t (fewer blocks nearer the noise); "
            f"bin {i} has {values[i]} > bin {i - 1} with {values[i - 1]} in {list(values)}"
        )


def _bin_edges(edges: Sequence[float] | None, bins: int, owner: str) -> tuple[float, ...]:
    return equal_edges(bins) if edges is None else check_edges(edges, bins, owner)


def fraction_to_depth(fraction: float, num_blocks: int) -> int:
    """Nearest depth to ``fraction * num_blocks`` (halves round up)."""
    return int(math.floor(fraction * num_blocks + 0.5))


@EXIT_POLICIES.register("full")
class FullExit(ExitPolicy):
    """Every block at every time (the plain model; kept FLOP fraction 1)."""

    def __init__(self) -> None:
        pass

    def _schedule(self, num_blocks: int) -> ExitSchedule:
        return ExitSchedule((0.0, 1.0), (num_blocks,), num_blocks)


@EXIT_POLICIES.register("staircase")
class StaircaseExit(ExitPolicy):
    """A non-increasing depth per time bin, in blocks or as fractions of ``num_blocks``.

    Args:
        depths: Blocks to run in each bin (bin 0 holds t = 0), for backbones with at least
            ``max(depths)`` blocks.
        fractions: Instead of ``depths``: fractions of ``num_blocks`` in ``[0, 1]`` per bin,
            rounded to the nearest depth for the backbone at hand (so one schedule fits any depth).
        edges: ``len(depths) + 1`` bin edges from 0 to 1; default equal bins.

    Raises:
        ConfigError: neither or both of ``depths`` / ``fractions``, values out of range, edges
            that do not cover ``[0, 1]``, or depths that grow with t.
        ComponentError: (when resolved) a depth above the backbone's ``num_blocks``.
    """

    def __init__(
        self,
        depths: Sequence[int] | None = None,
        fractions: Sequence[float] | None = None,
        edges: Sequence[float] | None = None,
    ) -> None:
        if (depths is None) == (fractions is None):
            raise ConfigError("StaircaseExit takes exactly one of depths= (blocks) or fractions= (of num_blocks)")
        self._depths = None if depths is None else _depth_list(depths, "StaircaseExit")
        self._fractions = None if fractions is None else _fraction_list(fractions, "StaircaseExit")
        values = self._depths if self._depths is not None else self._fractions
        check_non_increasing(values, "StaircaseExit")
        self._edges = _bin_edges(edges, len(values), "StaircaseExit")

    @classmethod
    def ase_dit_xl(cls, *, relative: bool = False) -> StaircaseExit:
        """The released ASE schedule for DiT-XL/2 (28 blocks; keeps 20/28 of block FLOPs uniformly in t).

        Args:
            relative: Give it as fractions ``d / 28`` so it scales to any number of blocks.
        """
        if relative:
            return cls(fractions=[d / 28 for d in ASE_DIT_XL_DEPTHS])
        return cls(depths=list(ASE_DIT_XL_DEPTHS))

    def _schedule(self, num_blocks: int) -> ExitSchedule:
        if self._depths is not None:
            depths = tuple(self._depths)
        else:
            depths = tuple(fraction_to_depth(f, num_blocks) for f in self._fractions)
        return ExitSchedule(self._edges, depths, num_blocks)


@EXIT_POLICIES.register("linear")
class LinearExit(ExitPolicy):
    """Depth falling linearly in t from ``start * num_blocks`` at t = 0 to ``end * num_blocks`` at t = 1.

    ``d(t)`` is the nearest integer to ``num_blocks (start + (end - start) t)``, halves
    going to the shallower depth (bins are closed on the left), computed as exact bins
    so FLOP fractions are exact.

    Args:
        start: Fraction of blocks at t = 0, in ``[0, 1]``.
        end: Fraction of blocks at t = 1, in ``[0, start]``.

    Raises:
        ConfigError: fractions outside ``[0, 1]`` or ``end > start`` (depth growing with t).
    """

    def __init__(self, start: float = 1.0, end: float = 0.5) -> None:
        start, end = _fraction_list([start, end], "LinearExit")
        check_non_increasing([start, end], "LinearExit")
        self.start, self.end = start, end

    def _schedule(self, num_blocks: int) -> ExitSchedule:
        top, bottom = num_blocks * self.start, num_blocks * self.end
        first, last = math.ceil(top - 0.5), math.ceil(bottom - 0.5)
        # the depth drops from k to k - 1 where the line crosses k - 1/2
        breaks = [(top - (k - 0.5)) / (top - bottom) for k in range(first, last, -1)]
        kept = [(b, k - 1) for b, k in zip(breaks, range(first, last, -1), strict=True) if b < 1.0]
        edges = (0.0, *(b for b, _ in kept), 1.0)
        return ExitSchedule(edges, (first, *(d for _, d in kept)), num_blocks)


@EXIT_POLICIES.register("table")
class TableExit(ExitPolicy):
    """An explicit depth per time bin for a backbone of exactly ``num_blocks`` blocks, any shape.

    Unlike :class:`StaircaseExit` the depths need not fall with t (for ablations and
    measured tables); it refuses backbones of another depth.

    Args:
        depths: Blocks to run in each bin, in ``[0, num_blocks]``.
        num_blocks: The backbone depth the table was made for.
        edges: ``len(depths) + 1`` bin edges from 0 to 1; default equal bins.

    Raises:
        ConfigError: bad depths or edges.
        ComponentError: a depth above ``num_blocks``, or (when resolved) a backbone of another depth.
    """

    def __init__(self, depths: Sequence[int], num_blocks: int, edges: Sequence[float] | None = None) -> None:
        self._depths = tuple(_depth_list(depths, "TableExit"))
        self._edges = _bin_edges(edges, len(self._depths), "TableExit")
        self.num_blocks = check_num_blocks(num_blocks, "TableExit")
        self._table = ExitSchedule(self._edges, self._depths, self.num_blocks)

    def _schedule(self, num_blocks: int) -> ExitSchedule:
        if num_blocks != self.num_blocks:
            raise ComponentError(
                f"TableExit was made for a backbone with {self.num_blocks} blocks; got one with {num_blocks}"
            )
        return self._table
