"""Noise-conditional convolutional score and energy networks for small images.

Both share one residual convolutional trunk conditioned on ``t`` and divide by
the process's noise level, so their outputs have the scale of the score
(``|score| ~ 1 / sigma``) while the network itself predicts O(1) quantities:

* :class:`NoiseConditionalScoreNet` (``ncsn``): ``s(x, t) = -F(x, t) / sigma(t)``
  (Song & Ermon 2020, technique 3: the output scaled by ``1 / sigma``);
* :class:`ConvEnergyScoreModel` (``energy_conv``): an energy
  ``E(x, t) = sum_pixels G(x, t) / sigma(t)`` and the score ``-grad_x E``
  (a conservative field; Salimans & Ho 2021). ``G`` is the trunk's one-channel
  output map, so ``E`` is a sum of local energies over the image.

Both declare the ``score`` parameterisation: train them with
:class:`~genflow.objectives.dsm.DenoisingScoreMatching` and ``weighting="sigma2"``
(the ``sigma^2``-weighted score loss is ``|| F - eps ||^2``, at most O(1) at every noise level).

References:
    Song & Ermon 2019, "Generative Modeling by Estimating Gradients of the Data Distribution" (NCSN, eq. 6);
    Song & Ermon 2020, "Improved Techniques for Training Score-Based Generative Models", sec. 3.3;
    Salimans & Ho 2021, "Should EBMs Model the Energy or the Score?";
    Yoon, Hwang and Lee 2021, "Adversarial Purification with Score-based Generative Models" (the EBM it purifies with).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from genflow.config import build_component
from genflow.errors import ConfigError
from genflow.model.base import MODELS, ScoreModel
from genflow.model.energy import EnergyScoreModel
from genflow.model.inputs import check_model_input, check_no_cond
from genflow.model.layers import TimestepEmbedding
from genflow.process.base import broadcast_time
from genflow.process.gaussian import GaussianProcess
from genflow.validation import check_instance

__all__ = ["ConvTrunk", "NoiseConditionalScoreNet", "ConvEnergy", "ConvEnergyScoreModel"]


def _image_shape(event_shape: Any) -> tuple[int, int, int]:
    shape = tuple(event_shape) if isinstance(event_shape, (list, tuple)) else None
    if shape is None or len(shape) != 3 or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0
                                                   for s in shape):  # fmt: skip
        raise ConfigError(f"event_shape must be (channels, height, width) of positive ints; got {event_shape!r}")
    return shape  # type: ignore[return-value]


def _check_sizes(**sizes: Any) -> None:
    for name, value in sizes.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"{name} must be a positive int; got {value!r}")


class _ConvBlock(nn.Module):
    """``h + Conv(SiLU(Conv(SiLU(GN h)) + A c))``: a residual conv branch shifted by the time embedding."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(math.gcd(8, hidden), hidden)  # per sample: no batch statistics
        self.conv1 = nn.Conv2d(hidden, hidden, 3, padding=1)
        self.time_proj = nn.Linear(hidden, hidden)
        self.conv2 = nn.Conv2d(hidden, hidden, 3, padding=1)

    def forward(self, h: Tensor, c: Tensor) -> Tensor:
        a = nn.functional.silu(self.conv1(nn.functional.silu(self.norm(h))) + self.time_proj(c)[:, :, None, None])
        return h + self.conv2(a)


class ConvTrunk(nn.Module):
    """A residual 3x3-conv network on ``(C, H, W)`` images, conditioned on ``t`` in every block.

    SiLU activations keep it smooth (an energy's gradient must be differentiable in the parameters).

    Args:
        in_channels / out_channels: Channels in and out (the spatial size is kept).
        hidden_size: Channels inside.
        depth: Residual blocks (two 3x3 convolutions each).
        output_bias: Give the last convolution a bias (an energy's is dead weight: a constant shifts no score).

    Shapes:
        x: ``(batch, in_channels, H, W)``; t: ``(batch,)``; output: ``(batch, out_channels, H, W)``.
    """

    def __init__(
        self, in_channels: int, out_channels: int, hidden_size: int, depth: int, output_bias: bool = True
    ) -> None:
        super().__init__()
        self.time_embed = TimestepEmbedding(hidden_size, frequency_dim=64)
        self.input = nn.Conv2d(in_channels, hidden_size, 3, padding=1)
        self.blocks = nn.ModuleList(_ConvBlock(hidden_size) for _ in range(depth))
        self.norm = nn.GroupNorm(math.gcd(8, hidden_size), hidden_size)
        self.output = nn.Conv2d(hidden_size, out_channels, 3, padding=1, bias=output_bias)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        c, h = self.time_embed(t), self.input(x)
        for block in self.blocks:
            h = block(h, c)
        return self.output(nn.functional.silu(self.norm(h)))


def _process(process: Any) -> GaussianProcess:
    return check_instance(build_component("process", process, "process"), GaussianProcess, "process")


@MODELS.register("ncsn")
class NoiseConditionalScoreNet(ScoreModel):
    """Score network ``s(x, t) = -F(x, t) / sigma(t)`` with a :class:`ConvTrunk` ``F``.

    Args:
        event_shape: ``(channels, height, width)`` of the images.
        process: The process it is trained on (its ``sigma(t)`` scales the output; a config dict or name).
        hidden_size: Trunk channels.
        depth: Trunk residual blocks.

    Raises:
        ConfigError: a bad shape or size, or a process that is not a Gaussian process.

    Shapes:
        x: ``(batch, *event_shape)``; t: ``(batch,)``; output like ``x``.
    """

    parameterization = "score"
    config_components = {"process": "process"}

    def __init__(
        self,
        event_shape: Sequence[int] = (1, 8, 8),
        process: GaussianProcess | dict | str = "ve",
        hidden_size: int = 32,
        depth: int = 3,
    ) -> None:
        super().__init__()
        self.event_shape = _image_shape(event_shape)
        _check_sizes(hidden_size=hidden_size, depth=depth)
        self.process = _process(process)
        self.trunk = ConvTrunk(self.event_shape[0], self.event_shape[0], hidden_size, depth)

    def forward(self, x: Tensor, t: Tensor, *, cond: Any = None, exit: Any = None) -> Tensor:
        """The score at noisy images ``x`` and times ``t`` (``cond`` must be None; ``exit`` is ignored)."""
        check_no_cond(cond, type(self).__name__)
        param = next(self.parameters())
        x, t = check_model_input(x, t, self.event_shape, param.dtype, type(self).__name__)
        return -self.trunk(x, t) / broadcast_time(self.process.sigma(t), x)

    def to_config(self) -> dict[str, Any]:
        config = super().to_config()
        config["process"] = self.process.to_config()
        return config


class ConvEnergy(nn.Module):
    """``E(x, t) = sum_pixels G(x, t) / sigma(t)``, ``G`` a one-channel :class:`ConvTrunk` map.

    Args:
        event_shape: ``(channels, height, width)``.
        process: The Gaussian process whose ``sigma(t)`` scales the energy.
        hidden_size / depth: Of the trunk.

    Shapes:
        x: ``(batch, *event_shape)``; t: ``(batch,)``; output: ``(batch,)``.
    """

    def __init__(self, event_shape: Sequence[int], process: GaussianProcess, hidden_size: int, depth: int) -> None:
        super().__init__()
        self.event_shape = tuple(event_shape)
        self.process = process
        self.trunk = ConvTrunk(self.event_shape[0], 1, hidden_size, depth, output_bias=False)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        return self.trunk(x, t).flatten(1).sum(1) / self.process.sigma(t)


@MODELS.register("energy_conv")
class ConvEnergyScoreModel(EnergyScoreModel):
    """A ready :class:`EnergyScoreModel` on a :class:`ConvEnergy` (score ``-grad_x E``), with a JSON config.

    Args:
        event_shape: ``(channels, height, width)`` of the images.
        process: The process it is trained on (a config dict or name).
        hidden_size / depth: Of the energy's trunk.

    Raises:
        ConfigError: a bad shape or size, or a process that is not a Gaussian process.
    """

    config_components = {"process": "process"}

    def __init__(
        self,
        event_shape: Sequence[int] = (1, 8, 8),
        process: GaussianProcess | dict | str = "ve",
        hidden_size: int = 32,
        depth: int = 3,
    ) -> None:
        shape = _image_shape(event_shape)
        _check_sizes(hidden_size=hidden_size, depth=depth)
        super().__init__(ConvEnergy(shape, _process(process), hidden_size, depth), "score")

    @property
    def process(self) -> GaussianProcess:
        """The process whose noise level scales the energy."""
        return self.energy_net.process

    def to_config(self) -> dict[str, Any]:
        config = super().to_config()
        config["process"] = self.process.to_config()
        return config
