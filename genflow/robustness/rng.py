"""Keeping attacks and the global RNG away from a stochastic defence's noise.

torchattacks draws its own randomness (random starts, Square's proposals) from the
global torch RNG, and ``APGD.perturb``, ``FAB.perturb`` and ``Square.perturb`` call
``torch.manual_seed(seed)`` before they run. A defence drawing its noise from that same
RNG would see the same noise on every run of such an attack (and the attack's
single-pass success check would be judged on that fixed noise). Two tools prevent it:

* :class:`GlobalRNGGuard` wraps the defence an attack drives and raises
  :class:`~genflow.robustness.errors.GlobalRNGDefenceError` if one forward pass of the defence
  consumed the global RNG (its state before and after differ), so a defence that draws from the
  global RNG is refused instead of silently evaluated.
* :func:`attack_rng` runs an attack with the global RNG seeded for reproducibility inside
  ``torch.random.fork_rng``, so the caller's global RNG state is restored afterwards: library code
  leaves it untouched, whatever the attack reseeds.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import Tensor, nn

from genflow.robustness.errors import GlobalRNGDefenceError

__all__ = ["GlobalRNGGuard", "attack_rng", "global_rng_state"]


def global_rng_state(device: torch.device) -> tuple[Tensor, ...]:
    """The global RNG state of the CPU and, for a CUDA ``device``, of that device."""
    states = (torch.random.get_rng_state(),)
    if device.type == "cuda":
        states += (torch.cuda.get_rng_state(device),)
    return states


class GlobalRNGGuard(nn.Module):
    """The defence, checked on every forward pass for use of the global RNG.

    Args:
        defence: Any ``nn.Module`` (``[0, 1]`` images in, logits out).

    Raises:
        GlobalRNGDefenceError: (on forward) the defence consumed global random numbers.
    """

    def __init__(self, defence: nn.Module) -> None:
        super().__init__()
        self.defence = defence

    def forward(self, x: Tensor) -> Tensor:
        before = global_rng_state(x.device)
        out = self.defence(x)
        after = global_rng_state(x.device)
        if any(not torch.equal(a, b) for a, b in zip(before, after, strict=True)):
            raise GlobalRNGDefenceError(
                f"{type(self.defence).__name__} drew random numbers from the global torch RNG during its forward "
                "pass; attacks such as APGD, FAB and Square reseed that RNG (torch.manual_seed), which would fix the "
                "defence's noise. Draw the noise from the defence's own torch.Generator instead."
            )
        return out


@contextlib.contextmanager
def attack_rng(seed: int, device: torch.device) -> Iterator[None]:
    """Seed the global RNG for an attack's own randomness, restoring the caller's state on exit."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.random.manual_seed(int(seed))  # the attack's random starts; restored by fork_rng
        yield
