"""Explicit randomness: every draw takes a ``torch.Generator`` (never global state)."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["standard_normal"]


def standard_normal(
    shape: tuple[int, ...] | torch.Size,
    generator: torch.Generator | None,
    *,
    dtype: torch.dtype,
    device: torch.device | str,
) -> Tensor:
    """Standard normal draws made on the generator's device, then moved to ``device``.

    A CPU generator therefore gives the same numbers whatever the target device.
    """
    gen_device = generator.device if generator is not None else torch.device("cpu")
    return torch.randn(tuple(shape), generator=generator, dtype=dtype, device=gen_device).to(device)
