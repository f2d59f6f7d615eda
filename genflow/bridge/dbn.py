"""Diffusion Bridge Network: an ensemble's prediction from one member's logits and early features.

End points, per input ``x``, on centred logits (``c(z) = z - mean_k z_k``; softmax is unchanged):

* target (t = 0): ``Z_0 = c(log(1/M sum_m softmax(f_m(x))))``, the ensemble's mean probabilities as logits;
* source (t = 1): ``Z_1 = c(f_A(x) / T)`` with ``T = T_low + T_spread Beta(1, 5)`` drawn per example in
  training (``2 + 0.4 Beta(1, 5)``), fixed at its mean ``T_low + T_spread / 6`` (about 2.067) at test.

The bridge network (:class:`~genflow.bridge.network.BridgeConvNet`) sees the member's
frozen early feature map ``h = features_A(x)`` and predicts the displacement
``D = z_t - Z_0``; the noise prediction is ``eps = D / sigma_t``, so ``x0_hat = z_t - D``
needs no division and ``t -> 0`` is safe. The member is held frozen
(:class:`~genflow.train.HeldNetwork`): only the bridge network trains.

References:
    Kim et al. 2024, "Fast Ensembling with Diffusion Schroedinger Bridge" (end points,
    temperature, conditioning, N = 5 steps, beta = 1e-4).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor

from genflow.bridge.base import BRIDGES, Bridge
from genflow.bridge.network import BridgeConvNet
from genflow.classify.base import Classifier
from genflow.errors import ComponentError, ConfigError, ShapeError
from genflow.process.base import Process
from genflow.train.held import HeldNetwork, as_held_network

__all__ = ["DiffusionBridgeNetwork", "centred", "beta_1_5"]


def centred(z: Tensor) -> Tensor:
    """``z - mean_k z_k`` over the last axis (the logits of the same probabilities, summing to zero)."""
    return z - z.mean(dim=-1, keepdim=True)


def beta_1_5(u: Tensor) -> Tensor:
    """A ``Beta(1, 5)`` draw from a uniform ``u`` by the inverse CDF ``1 - (1 - u)^(1/5)``."""
    return 1.0 - (1.0 - u).clamp_min(0.0).pow(0.2)


@BRIDGES.register("dbn")
class DiffusionBridgeNetwork(Bridge):
    """A DBN from a frozen classifier's logits to an ensemble's (see the module docstring).

    Args:
        source: The source member ``A`` (a :class:`~genflow.classify.Classifier`, held frozen by value, or a
            :class:`~genflow.train.HeldNetwork` holding one, or its config).
        process: The bridge process; default ``brownian_bridge`` (beta = 1e-4).
        steps: ``N`` discrete times trained on and sampled at (a distilled bridge has 1).
        widths / blocks / expansion / embed_dim: The bridge network's size (:class:`BridgeConvNet`).
        temperature_low / temperature_spread: ``T = low + spread Beta(1, 5)`` in training, its mean at test.
        seed: Seed of the posterior noise when :meth:`predict` is given no generator (deterministic evaluation).

    Raises:
        ComponentError: ``source`` is not a classifier. ConfigError: bad sizes or temperatures.

    Shapes:
        x: the source's images; probabilities ``(b, K)``.
    """

    config_components: ClassVar[Mapping[str, str]] = {"process": "process", "source": "held_network"}

    def __init__(
        self,
        source: Classifier | HeldNetwork | dict[str, Any],
        process: Process | str | dict[str, Any] = "brownian_bridge",
        steps: int = 5,
        widths: Sequence[int] = (16, 32),
        blocks: int = 1,
        expansion: int = 2,
        embed_dim: int = 32,
        temperature_low: float = 2.0,
        temperature_spread: float = 0.4,
        seed: int = 0,
    ) -> None:
        super().__init__(process, steps)
        held = HeldNetwork(source) if isinstance(source, Classifier) else as_held_network(source, "source")
        if not isinstance(held.module, Classifier):
            raise ComponentError(f"DiffusionBridgeNetwork.source must hold a Classifier; got "
                                 f"{type(held.module).__name__}")  # fmt: skip
        self._config_args["source"] = held  # recorded as the held network (by reference or by value)
        if not (float(temperature_low) > 0 and float(temperature_spread) >= 0):
            raise ConfigError(f"need temperature_low > 0 and temperature_spread >= 0; got {temperature_low}, "
                              f"{temperature_spread}")  # fmt: skip
        self.source = held
        self.temperature_low, self.temperature_spread = float(temperature_low), float(temperature_spread)
        self.seed = int(seed)
        member = held.module
        probe = torch.zeros(1, member.in_chans, member.image_size, member.image_size,
                            dtype=next(member.parameters()).dtype)  # fmt: skip
        with torch.no_grad():
            self.feature_shape = tuple(member.features(probe).shape[1:])
        self.num_classes = member.num_classes
        self.network = BridgeConvNet(member.num_classes, self.feature_shape[0], tuple(widths), blocks, expansion,
                                     embed_dim)  # fmt: skip

    @property
    def test_temperature(self) -> float:
        """The mean training temperature ``low + spread / 6`` (the mean of ``Beta(1, 5)`` is 1/6)."""
        return self.temperature_low + self.temperature_spread / 6.0

    def source_logits(self, logits: Tensor, u: Tensor | None = None) -> Tensor:
        """``Z_1 = c(logits / T)``: ``T`` from uniforms ``u`` ``(b,)`` (training) or its mean (``u`` None)."""
        if u is None:
            return centred(logits / self.test_temperature)
        temperature = self.temperature_low + self.temperature_spread * beta_1_5(u.to(logits.dtype))
        return centred(logits / temperature[:, None])

    def check_pair(self, source: Tensor, cond: Tensor) -> None:
        """Class count and feature-map shape against the source member's.

        Raises:
            ShapeError: ``source`` with another class count, or ``cond`` not the member's feature map shape.
        """
        if source.shape[-1] != self.num_classes:
            raise ShapeError(f"{type(self).__name__}: the source has {source.shape[-1]} classes; this bridge's "
                             f"member has {self.num_classes}")  # fmt: skip
        if tuple(cond.shape[1:]) != self.feature_shape:
            raise ShapeError(f"{type(self).__name__}: cond must be the member's feature map (b, "
                             f"{', '.join(map(str, self.feature_shape))}); got {tuple(cond.shape)}")  # fmt: skip

    def prepare(self, batch: Mapping[str, Tensor], draws: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Raw member logits and ensemble log-probabilities to the bridge's end points (temperature, centring)."""
        ends = super().prepare(batch, draws)
        source = self.source_logits(ends["source"], draws.get("temperature"))
        return {"source": source, "target": centred(ends["target"]), "cond": ends["cond"]}

    def eps(self, z: Tensor, cond: Tensor, t: Tensor) -> Tensor:
        """``D(z, h, t) / sigma_t`` (``sigma_t`` floored at the smallest normal float: only ``x0_hat`` is used at
        ``t = 0``, where ``sigma_t D / sigma_t = D``)."""
        sigma = self.process.sigma(t.to(z.dtype)).clamp_min(torch.finfo(z.dtype).tiny)
        return self.network(z, cond, t.to(z.dtype)) / sigma[:, None]

    def endpoints(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The member's raw logits and early feature map of images ``x`` (one pass, no gradient)."""
        with torch.no_grad():
            return self.source.module.logits_and_features(x)

    def bridge_from(self, logits: Tensor, cond: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """The bridge's sample ``Z_0`` from the member's raw logits and feature map (test temperature)."""
        source = self.source_logits(logits)
        self.check_pair(source, cond)
        if generator is None:
            generator = torch.Generator(device=logits.device).manual_seed(self.seed)
        return self.sample(source, cond, generator=generator)

    def predict(self, x: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """Probabilities ``softmax(Z_0 / output_temperature)`` of images ``x`` (member pass + ``N`` bridge calls)."""
        logits, cond = self.endpoints(x)
        return self.scaled(self.bridge_from(logits, cond, generator))

    def network_flops(self) -> int:
        """FLOPs of one bridge-network call on one image."""
        return self.network.flops(*self.feature_shape[1:])

    def flops(self, batch: int = 1) -> int:
        """FLOPs of :meth:`predict`: one member pass plus ``N`` bridge-network calls per image."""
        return int(self.source.module.flops(batch)) + batch * self.steps * self.network_flops()
