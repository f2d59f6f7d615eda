"""Explicit randomness: every draw takes a ``torch.Generator`` (never global state)."""

from __future__ import annotations

import torch
from torch import Tensor

from genflow.errors import GeneratorRequiredError

__all__ = ["require_generator", "standard_normal", "seed_from"]


def require_generator(generator: torch.Generator | None, where: str) -> torch.Generator:
    """Return ``generator`` or raise :class:`GeneratorRequiredError` naming ``where`` it was needed."""
    if not isinstance(generator, torch.Generator):
        raise GeneratorRequiredError(
            f"{where} draws random numbers and needs generator=torch.Generator().manual_seed(seed); "
            f"got {type(generator).__name__}"
        )
    return generator


def standard_normal(
    shape: tuple[int, ...] | torch.Size,
    generator: torch.Generator | None,
    *,
    dtype: torch.dtype,
    device: torch.device | str,
    where: str = "this operation",
) -> Tensor:
    """Standard normal draws made on the generator's device, then moved to ``device``.

    A CPU generator therefore gives the same numbers whatever the target device.

    Raises:
        GeneratorRequiredError: ``generator`` is not a ``torch.Generator``.
    """
    generator = require_generator(generator, where)
    return torch.randn(tuple(shape), generator=generator, dtype=dtype, device=generator.device).to(device)


def seed_from(generator: torch.Generator | None, where: str = "this operation") -> int:
    """Draw a 62-bit integer seed (for backends that take a seed, e.g. torchsde's Brownian motion)."""
    generator = require_generator(generator, where)
    return int(torch.randint(0, 2**62, (), generator=generator, device=generator.device))
