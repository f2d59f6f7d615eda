"""The :class:`ExitPolicy` ABC: how many backbone blocks to run at each time ``t``.

A policy is keyed on the model's time ``t`` in ``[0, 1]`` (t = 0 data, t = 1 noise),
not on a solver's step index, so one schedule holds for any time grid, any
respacing and any solver, adaptive ones included. Every policy resolves, for a
backbone with ``num_blocks`` exitable blocks, to an :class:`ExitSchedule`: a
piecewise-constant depth over bins ``[e_i, e_{i+1})`` covering ``[0, 1]`` (the last
bin includes 1). Depths are then a ``bucketize`` on the input's device (no host
copy) or a ``bisect`` on the host, and FLOP fractions are exact sums over bins.

References:
    Moon et al. 2024, "A Simple Early Exiting Framework for Accelerated Sampling in
    Diffusion Models" (ASE), sec. 3 (time-dependent exit schedule, non-increasing in t).
"""

from __future__ import annotations

import bisect
import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from numbers import Integral, Real
from typing import Any

import torch
from torch import Tensor

from genflow.config import Configurable
from genflow.errors import ComponentError, ConfigError, DTypeError, ShapeError
from genflow.model.flops import BlockFlops
from genflow.registry import Registry

__all__ = [
    "ExitPolicy",
    "ExitSchedule",
    "EXIT_POLICIES",
    "check_edges",
    "check_num_blocks",
    "equal_edges",
    "model_num_blocks",
    "block_weights",
]


def equal_edges(bins: int) -> tuple[float, ...]:
    """``bins + 1`` equally spaced edges ``0, 1/bins, ..., 1``.

    Raises:
        ConfigError: ``bins`` is not a positive int.
    """
    if not isinstance(bins, Integral) or isinstance(bins, bool) or bins < 1:
        raise ConfigError(f"the number of time bins must be a positive int; got {bins!r}")
    return tuple(i / bins for i in range(bins)) + (1.0,)


def check_edges(edges: Sequence[float], bins: int, owner: str) -> tuple[float, ...]:
    """Validate bin edges: ``bins + 1`` finite numbers increasing strictly from 0 to 1.

    Raises:
        ConfigError: wrong count, not starting at 0 / ending at 1, or not strictly increasing.
    """
    edges = tuple(float(e) for e in edges)
    if len(edges) != bins + 1:
        raise ConfigError(f"{owner}: {bins} bins need {bins + 1} edges; got {len(edges)}")
    if edges[0] != 0.0 or edges[-1] != 1.0:
        raise ConfigError(f"{owner}: bin edges must cover [0, 1] (first 0, last 1); got {edges[0]} ... {edges[-1]}")
    if not all(math.isfinite(e) for e in edges) or any(b <= a for a, b in pairwise(edges)):
        raise ConfigError(f"{owner}: bin edges must increase strictly; got {list(edges)}")
    return edges


def check_num_blocks(num_blocks: Any, owner: str) -> int:
    """``num_blocks`` as a positive int.

    Raises:
        ComponentError: not a positive int (e.g. ``None``: the backbone has no exitable blocks).
    """
    if not isinstance(num_blocks, Integral) or isinstance(num_blocks, bool) or num_blocks < 1:
        raise ComponentError(f"{owner} needs a backbone with num_blocks >= 1 exitable blocks; got {num_blocks!r}")
    return int(num_blocks)


def model_num_blocks(model: Any, owner: str = "an exit policy") -> int:
    """The ``num_blocks`` a backbone declares (looking through ``DistributedDataParallel``).

    Raises:
        ComponentError: the model declares no ``num_blocks`` (it does not support early exit).
    """
    if isinstance(model, torch.nn.parallel.DistributedDataParallel):
        model = model.module
    num_blocks = getattr(model, "num_blocks", None)
    if num_blocks is None:
        raise ComponentError(
            f"{owner} needs a backbone that declares num_blocks (DiT, UViT); {type(model).__name__} declares none"
        )
    return check_num_blocks(num_blocks, owner)


def block_weights(num_blocks: int, block_flops: BlockFlops | Sequence[float] | None) -> tuple[float, ...]:
    """Per-block costs: the model's measured block FLOPs, or equal blocks when ``None``.

    Raises:
        ShapeError: a cost per block of the wrong length, or negative / all-zero costs.
    """
    if block_flops is None:
        return (1.0,) * num_blocks
    weights = tuple(float(w) for w in (block_flops.blocks if isinstance(block_flops, BlockFlops) else block_flops))
    if len(weights) != num_blocks:
        raise ShapeError(f"block_flops must give one cost per block ({num_blocks}); got {len(weights)}")
    if any(w < 0 or not math.isfinite(w) for w in weights) or sum(weights) <= 0:
        raise ShapeError(f"block_flops must be finite, non-negative and not all zero; got {list(weights)}")
    return weights


@dataclass(frozen=True)
class ExitSchedule:
    """A depth per time bin for a backbone of ``num_blocks`` blocks.

    Attributes:
        edges: ``K + 1`` edges from 0 to 1; bin ``i`` is ``[edges[i], edges[i+1])``, the last includes 1.
        depths: ``K`` depths in ``[0, num_blocks]``.
        num_blocks: Exitable blocks of the backbone.

    Raises:
        ConfigError: bad edges, or edges and depths of different lengths.
        ComponentError: a depth outside ``[0, num_blocks]``.
    """

    edges: tuple[float, ...]
    depths: tuple[int, ...]
    num_blocks: int
    _tables: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_edges(self.edges, len(self.depths), "ExitSchedule")
        bad = [d for d in self.depths if not 0 <= d <= self.num_blocks]
        if bad:
            raise ComponentError(
                f"exit depths must lie in [0, {self.num_blocks}] for a backbone with {self.num_blocks} blocks; "
                f"got {list(self.depths)}"
            )

    def depth_at(self, t: float) -> int:
        """Depth at one host time (times outside ``[0, 1]`` take the nearest end bin)."""
        return self.depths[bisect.bisect_right(self.edges, float(t), 1, len(self.edges) - 1) - 1]

    def depths_at(self, t: Tensor) -> Tensor:
        """Depths (int64, ``t``'s shape and device) by ``bucketize`` in float64: no host copy."""
        if t.device not in self._tables:  # one host-to-device copy per device, then cached
            self._tables[t.device] = (
                torch.tensor(self.edges[1:-1], dtype=torch.float64, device=t.device),
                torch.tensor(self.depths, dtype=torch.int64, device=t.device),
            )
        inner, table = self._tables[t.device]
        return table[torch.bucketize(t.detach().to(torch.float64), inner, right=True)]

    def kept(self, block_flops: BlockFlops | Sequence[float] | None = None) -> tuple[float, ...]:
        """Fraction of block FLOPs each bin's depth keeps (equal blocks when ``block_flops`` is None)."""
        weights = block_weights(self.num_blocks, block_flops)
        total = sum(weights)
        return tuple(sum(weights[:d]) / total for d in self.depths)


class ExitPolicy(Configurable, ABC):
    """Maps times ``t`` and a backbone's ``num_blocks`` to the number of blocks to run.

    Subclasses implement :meth:`_schedule`; depths, host depths and FLOP fractions follow.
    Policies are immutable after construction, so resolved schedules are cached.
    """

    @abstractmethod
    def _schedule(self, num_blocks: int) -> ExitSchedule:
        """The piecewise-constant schedule for ``num_blocks`` (``num_blocks`` already checked)."""

    def schedule(self, num_blocks: int) -> ExitSchedule:
        """The policy resolved for a backbone with ``num_blocks`` exitable blocks.

        Raises:
            ComponentError: ``num_blocks`` is not a positive int, or the policy asks for
                more blocks than the backbone has.
        """
        num_blocks = check_num_blocks(num_blocks, type(self).__name__)
        cache = self.__dict__.setdefault("_schedules", {})
        if num_blocks not in cache:
            cache[num_blocks] = self._schedule(num_blocks)
        return cache[num_blocks]

    def depths(self, t: Tensor | float, num_blocks: int) -> Tensor:
        """Blocks to run at each time, on ``t``'s device without a host copy.

        Args:
            t: Times in ``[0, 1]``, any shape (scalar or ``(batch,)``).
            num_blocks: The backbone's exitable blocks.

        Returns:
            int64 depths shaped like ``t``.

        Raises:
            DTypeError: ``t`` is not a real number or a floating tensor.
        """
        if not isinstance(t, Tensor):
            if not isinstance(t, Real):
                raise DTypeError(f"{type(self).__name__}.depths: t must be a float or a tensor; got {type(t).__name__}")
            t = torch.tensor(float(t), dtype=torch.float64)
        elif not t.is_floating_point():
            raise DTypeError(f"{type(self).__name__}.depths: t must be a floating tensor; got dtype {t.dtype}")
        return self.schedule(num_blocks).depths_at(t)

    def depth(self, t: float, num_blocks: int) -> int:
        """Blocks to run at one host time ``t`` (a float: no device involved)."""
        return self.schedule(num_blocks).depth_at(float(t))

    def flop_fraction(
        self,
        num_blocks: int,
        *,
        times: Tensor | Sequence[float] | None = None,
        block_flops: BlockFlops | Sequence[float] | None = None,
    ) -> float:
        """Fraction of the backbone's block FLOPs this policy keeps.

        Args:
            num_blocks: Exitable blocks of the backbone.
            times: ``None``: the expectation for ``t`` uniform on ``[0, 1]`` (exact, over bins).
                Otherwise the times the model is evaluated at (e.g. ``ts[:-1]`` of a
                one-call-per-step solver's grid): the mean over them.
            block_flops: The model's per-block FLOPs (``model.block_flops(x, t)`` or its
                ``blocks``); ``None`` counts every block equally.

        Returns:
            A number in ``[0, 1]``; 1 - it is the share of block FLOPs saved.
        """
        schedule = self.schedule(num_blocks)
        kept = schedule.kept(block_flops)
        if times is None:
            widths = (b - a for a, b in pairwise(schedule.edges))
            return float(sum(w * k for w, k in zip(widths, kept, strict=True)))
        values = torch.as_tensor(times, dtype=torch.float64).reshape(-1).tolist()
        if not values:
            raise ShapeError(f"{type(self).__name__}.flop_fraction: times must not be empty")
        weights = block_weights(num_blocks, block_flops)
        total = sum(weights)
        return float(sum(sum(weights[: schedule.depth_at(t)]) for t in values) / (total * len(values)))


EXIT_POLICIES: Registry[ExitPolicy] = Registry("exit policy", ExitPolicy)
