"""Several diffusion bridges from one member, each toward a different ensemble, averaged.

Bridge ``j`` maps the shared member's logits (one pass, one feature map) to its
own ensemble's; the prediction is ``1/J sum_j softmax(Z_0^(j))``, then an optional
output temperature (fitted like one bridge's, :func:`~genflow.bridge.base.calibrate`).

References:
    Kim et al. 2024, "Fast Ensembling with Diffusion Schroedinger Bridge" (multiple bridges).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from genflow.bridge.base import calibrate
from genflow.bridge.dbn import DiffusionBridgeNetwork
from genflow.errors import ComponentError, ConfigError
from genflow.validation import check_instance

__all__ = ["AveragedBridges"]


class AveragedBridges(nn.Module):
    """The average of bridges that share one source member (see the module docstring).

    Args:
        bridges: :class:`DiffusionBridgeNetwork` s holding the same member (the same module, or equal weights).

    Raises:
        ConfigError: no bridges. ComponentError: a bridge that is not a DBN, or bridges from different members.
    """

    def __init__(self, bridges: Sequence[DiffusionBridgeNetwork]) -> None:
        super().__init__()
        if not bridges:
            raise ConfigError("AveragedBridges needs at least one bridge; got none")
        for i, bridge in enumerate(bridges):
            check_instance(bridge, DiffusionBridgeNetwork, f"bridges[{i}]")
        first = bridges[0].source.module
        for i, bridge in enumerate(bridges[1:], start=1):
            other = bridge.source.module
            same = other is first or all(
                torch.equal(a, b) for a, b in zip(first.state_dict().values(), other.state_dict().values(), strict=True)
            )
            if other.to_config() != first.to_config() or not same:
                raise ComponentError(f"bridges[{i}] starts from another member than bridges[0]; averaged bridges "
                                     "share their source member")  # fmt: skip
        self.bridges = nn.ModuleList(bridges)
        self.num_classes, self.image_size = bridges[0].num_classes, first.image_size
        self.register_buffer("output_temperature", torch.ones((), dtype=torch.float64))

    def __len__(self) -> int:
        return len(self.bridges)

    def predict(self, x: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """``softmax(log(1/J sum_j softmax(Z_0^(j))) / output_temperature)`` (one member pass for all bridges)."""
        logits, cond = self.bridges[0].endpoints(x)
        probs = torch.stack([b.scaled(b.bridge_from(logits, cond, generator)) for b in self.bridges]).mean(0)
        log_probs = probs.clamp_min(torch.finfo(probs.dtype).tiny).log()
        return torch.softmax(log_probs / self.output_temperature.to(log_probs.dtype), dim=-1)

    def forward(self, x: Tensor) -> Tensor:
        """Log of :meth:`predict` (valid logits)."""
        return self.predict(x).clamp_min(torch.finfo(torch.float32).tiny).log()

    def calibrate(self, x: Tensor, labels: Tensor, *, generator: torch.Generator | None = None) -> float:
        """Fit the output temperature of the average on held-out data; returns it."""
        return calibrate(self, x, labels, generator=generator)

    def flops(self, batch: int = 1) -> int:
        """One member pass plus every bridge's network calls."""
        member = int(self.bridges[0].source.module.flops(batch))
        return member + batch * sum(b.steps * b.network_flops() for b in self.bridges)
