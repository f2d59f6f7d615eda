"""Finding the first step whose loss or gradient is NaN or infinite, without a host sync per step.

Each step folds ``isfinite(loss) & isfinite(grad_norm)`` into one integer on
the device: the first bad step seen so far. The trainer reads it (one sync,
shared with the metric log's) before every log record, validation and
checkpoint and at the end of ``fit``, so nothing computed after a non-finite
step is ever logged or saved, and the error names the first bad step.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor

from genflow.train.distributed import DistributedContext
from genflow.train.errors import NonFiniteLossError

__all__ = ["FiniteGuard", "nonfinite_error"]

NONE_YET = torch.iinfo(torch.int64).max


class FiniteGuard:
    """The first step (1-based) with a non-finite loss or gradient norm, kept on ``device``."""

    def __init__(self, device: torch.device) -> None:
        self.first_bad = torch.full((), NONE_YET, dtype=torch.int64, device=device)

    @staticmethod
    def finite(loss: Tensor, grad_norm: Tensor) -> Tensor:
        """A 0-d bool tensor on the device: the loss and the gradient norm are finite."""
        return torch.isfinite(loss.detach()).all() & torch.isfinite(grad_norm.detach()).all()

    def observe(self, step: int, finite: Tensor) -> None:
        """Record ``step`` as the first bad one if it is not finite and none was before (no sync)."""
        self.first_bad = torch.where(finite, self.first_bad, torch.clamp(self.first_bad, max=step))

    def first_bad_step(self, ctx: DistributedContext) -> int | None:
        """The first bad step over all processes, or None (one host sync; a collective in DDP)."""
        bad = self.first_bad.clone()
        if ctx.enabled:
            torch.distributed.all_reduce(bad, op=torch.distributed.ReduceOp.MIN)
        value = int(bad)
        return None if value == NONE_YET else value

    @staticmethod
    def all_finite(finite: Tensor, ctx: DistributedContext) -> bool:
        """Whether a step was finite on every process (one sync; used by ``skip_nonfinite``)."""
        flag = finite.to(torch.int32)
        if ctx.enabled:
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MIN)
        return bool(flag)


def nonfinite_error(step: int, indices: Tensor, batch: Mapping[str, Tensor], last: Path | None) -> NonFiniteLossError:
    """The error for a non-finite ``step`` whose global batch is ``batch`` (the dataset's ``indices``), naming
    the examples whose floating fields hold NaN or Inf, and the last complete checkpoint ``last``."""
    culprits = {}
    for name, value in batch.items():
        if value.is_floating_point():
            rows = ~torch.isfinite(value.reshape(len(value), -1)).all(1)
            if bool(rows.any()):
                culprits[name] = indices[rows].tolist()
    found = (
        "; examples with NaN/Inf data: " + ", ".join(f"{k} at indices {v[:10]}" for k, v in culprits.items())
        if culprits
        else "; the data of that batch is finite (try a lower lr, grad_clip > 0 or skip_nonfinite=True)"
    )
    return NonFiniteLossError(
        f"the loss or gradient norm is NaN or infinite at step {step} (global batch indices "
        f"{indices.tolist()[:16]}{' ...' if len(indices) > 16 else ''}){found}. Training stopped; nothing "
        f"after step {step - 1} was saved or logged; the last complete checkpoint is {last or 'none'}",
        step=step,
        indices=indices.tolist(),
        last_checkpoint=last,
    )
