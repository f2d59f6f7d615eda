"""Early-exit depths: validate ``exit=`` and group samples so each block runs only where needed.

A backbone with ``num_blocks`` exitable blocks accepts ``exit`` as ``None`` (all
blocks), an int, or an integer tensor of per-sample depths ``(batch,)``. With
per-sample depths the batch is sorted by depth, descending, once; block ``k``
then runs on the contiguous prefix of samples whose depth exceeds ``k``, and the
others pass through unchanged. Compute therefore scales with the depths drawn,
unlike running every block on every sample and gathering the exits.

References:
    Moon et al. 2024, "A Simple Early Exiting Framework for Accelerated Sampling in
    Diffusion Models" (ASE), sec. 3 (per-sample exits in a mixed-t batch).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from numbers import Integral
from typing import Any

import torch
from torch import Tensor

from genflow.errors import DTypeError, ShapeError

__all__ = ["ExitDepths", "run_on_prefix", "prepare_transformer_inputs"]


@dataclass(frozen=True)
class ExitDepths:
    """Resolved exit: how many samples run each block, and the sort that makes them a prefix.

    Attributes:
        active: ``active[k]`` = number of samples (in sorted order, a prefix) that run block ``k``.
        order: Permutation sorting samples by depth, descending; ``None`` when all depths are equal.
        inverse: Inverse of ``order``.
    """

    active: tuple[int, ...]
    order: Tensor | None = None
    inverse: Tensor | None = None

    @classmethod
    def resolve(cls, exit: Any, batch: int, num_blocks: int, *, device: torch.device, owner: str) -> ExitDepths:
        """Validate ``exit`` for a model with ``num_blocks`` exitable blocks.

        Args:
            exit: ``None``, an int in ``[0, num_blocks]``, a 0-d integer tensor, or an
                integer tensor ``(batch,)`` of per-sample depths (one host copy).
            batch: Batch size.
            num_blocks: Number of exitable blocks.
            device: Device of the batch (for the permutation).
            owner: Model name used in messages.

        Raises:
            DTypeError: ``exit`` is not an int or an integer tensor.
            ShapeError: a tensor of a shape other than ``()`` or ``(batch,)``, or a depth
                outside ``[0, num_blocks]``.
        """
        if exit is None:
            return cls((batch,) * num_blocks)
        if isinstance(exit, Tensor):
            if exit.is_floating_point() or exit.is_complex() or exit.dtype == torch.bool:
                raise DTypeError(f"{owner} exit must be an int or an integer tensor; got dtype {exit.dtype}")
            if exit.ndim not in (0, 1) or (exit.ndim == 1 and exit.shape != (batch,)):
                raise ShapeError(f"{owner} exit must be an int or have shape ({batch},); got {tuple(exit.shape)}")
            depths = [int(d) for d in exit.reshape(-1).tolist()]
        elif isinstance(exit, Integral) and not isinstance(exit, bool):
            depths = [int(exit)]
        else:
            raise DTypeError(f"{owner} exit must be None, an int or an integer tensor; got {type(exit).__name__}")
        lo, hi = min(depths), max(depths)
        if lo < 0 or hi > num_blocks:
            raise ShapeError(f"{owner} exit depths must lie in [0, {num_blocks}]; got values in [{lo}, {hi}]")
        if lo == hi:
            return cls((batch,) * lo + (0,) * (num_blocks - lo))
        ranked = sorted(depths, reverse=True)
        active = tuple(sum(1 for d in ranked if d > k) for k in range(num_blocks))
        order = torch.argsort(exit.to(device), descending=True, stable=True)
        return cls(active, order, torch.argsort(order))

    @property
    def max_depth(self) -> int:
        """Number of blocks that run on at least one sample."""
        return sum(1 for n in self.active if n > 0)

    def sort(self, tensor: Tensor | None) -> Tensor | None:
        """Reorder a per-sample tensor into depth order (identity when depths are equal)."""
        return tensor if tensor is None or self.order is None else tensor.index_select(0, self.order)

    def unsort(self, tensor: Tensor) -> Tensor:
        """Undo :meth:`sort`."""
        return tensor if self.inverse is None else tensor.index_select(0, self.inverse)


def run_on_prefix(fn: Callable[..., Tensor], n: int, h: Tensor, *per_sample: Tensor) -> Tensor:
    """``fn`` applied to the first ``n`` samples of ``h``; the rest pass through unchanged.

    Args:
        fn: ``fn(h, *per_sample) -> Tensor`` shaped like ``h``.
        n: Number of leading samples to update.
        h: Hidden state ``(batch, ...)``.
        per_sample: Further per-sample arguments (sliced like ``h``).
    """
    if n == h.shape[0]:
        return fn(h, *per_sample)
    if n == 0:
        return h
    return torch.cat([fn(h[:n], *(a[:n] for a in per_sample)), h[n:]], dim=0)


def prepare_transformer_inputs(
    model: Any, x: Any, t: Any, cond: Any, exit: Any, owner: str
) -> tuple[Tensor, Tensor, Tensor, ExitDepths]:
    """Validate a transformer backbone's ``(x, t, cond, exit)`` and sort the batch by exit depth.

    ``model`` provides ``event_shape``, ``pos_embed`` (its dtype), ``num_classes`` and ``num_blocks``.

    Returns:
        ``(x, t, labels, depths)`` with the first three sorted by depth (undo with ``depths.unsort``).
    """
    from genflow.model.inputs import check_labels, check_model_input

    x, t = check_model_input(x, t, model.event_shape, model.pos_embed.dtype, owner)
    labels = check_labels(cond, x.shape[0], model.num_classes, device=x.device, owner=owner)
    depths = ExitDepths.resolve(exit, x.shape[0], model.num_blocks, device=x.device, owner=owner)
    return depths.sort(x), depths.sort(t), depths.sort(labels), depths
