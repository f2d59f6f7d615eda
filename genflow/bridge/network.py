"""The bridge network of a Diffusion Bridge Network: a small convolutional net on a frozen feature map.

Inputs: the bridge state ``z_t`` (logits, ``(b, K)``), the source classifier's early
feature map ``h`` (``(b, C, H, W)``) and the time ``t`` (``(b,)``). A 1x1 stem maps
``h`` to ``widths[0]`` channels; each stage is a stride-``2`` (after the first)
inverted-residual block (1x1 expansion, 3x3 depthwise, 1x1 projection; Sandler et al.
2018) followed by ``blocks - 1`` more, with the embedding of ``(t, z_t)`` added to every
stage's input (a per-stage linear map of a shared embedding, as the DBN paper adds
the time embedding per stage). Global average pooling, then a linear head on the
pooled features and ``z_t`` gives ``(b, K)``, initialised to zero.

References:
    Kim et al. 2024, "Fast Ensembling with Diffusion Schroedinger Bridge" (the bridge network);
    Sandler et al. 2018, "MobileNetV2: Inverted Residuals and Linear Bottlenecks" (the block).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from genflow.errors import ConfigError, ShapeError
from genflow.model.flops import flop_counter

__all__ = ["BridgeConvNet", "InvertedResidual", "time_features"]


def time_features(t: Tensor, dim: int) -> Tensor:
    """Sinusoidal features ``(b, dim)`` of times ``t`` in ``[0, 1]`` (frequencies ``1 .. 1000``, geometric)."""
    half = dim // 2
    freqs = torch.exp(torch.linspace(0.0, math.log(1000.0), half, dtype=t.dtype, device=t.device))
    angles = t[:, None] * freqs[None, :] * math.pi
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


class InvertedResidual(nn.Module):
    """``x -> 1x1 expand -> 3x3 depthwise (stride) -> 1x1 project`` with GroupNorm and SiLU; identity skip when
    the shape is kept."""

    def __init__(self, inplanes: int, planes: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = inplanes * expansion
        self.body = nn.Sequential(
            nn.Conv2d(inplanes, hidden, 1, bias=False), nn.GroupNorm(1, hidden), nn.SiLU(),
            nn.Conv2d(hidden, hidden, 3, stride=stride, padding=1, groups=hidden, bias=False),
            nn.GroupNorm(1, hidden), nn.SiLU(),
            nn.Conv2d(hidden, planes, 1, bias=False), nn.GroupNorm(1, planes),
        )  # fmt: skip
        self.skip = stride == 1 and inplanes == planes

    def forward(self, x: Tensor) -> Tensor:
        y = self.body(x)
        return x + y if self.skip else y


class BridgeConvNet(nn.Module):
    """The DBN bridge network (see the module docstring).

    Args:
        num_classes: ``K``, the size of the bridge state.
        in_chans: Channels ``C`` of the feature map.
        widths: Channels per stage (stage ``i > 0`` halves the resolution).
        blocks: Inverted-residual blocks per stage.
        expansion: Channel expansion inside a block.
        embed_dim: Size of the shared ``(t, z_t)`` embedding.

    Raises:
        ConfigError: a non-positive size.

    Shapes:
        z: ``(b, K)``; h: ``(b, C, H, W)``; t: ``(b,)``; output ``(b, K)``.
    """

    def __init__(
        self,
        num_classes: int,
        in_chans: int,
        widths: Sequence[int] = (16, 32),
        blocks: int = 1,
        expansion: int = 2,
        embed_dim: int = 32,
    ) -> None:
        super().__init__()
        sizes = {"num_classes": num_classes, "in_chans": in_chans, "blocks": blocks, "expansion": expansion,
                 "embed_dim": embed_dim, **{f"widths[{i}]": w for i, w in enumerate(widths)}}  # fmt: skip
        bad = {k: v for k, v in sizes.items() if not isinstance(v, int) or isinstance(v, bool) or v < 1}
        if bad or not widths:
            raise ConfigError(f"BridgeConvNet sizes must be ints >= 1 with at least one width; got {bad or widths}")
        self.num_classes, self.in_chans, self.embed_dim = num_classes, in_chans, embed_dim
        self.embed = nn.Sequential(nn.Linear(embed_dim + num_classes, embed_dim), nn.SiLU(),
                                   nn.Linear(embed_dim, embed_dim), nn.SiLU())  # fmt: skip
        self.stem = nn.Conv2d(in_chans, widths[0], 1)
        self.stage_embed = nn.ModuleList()
        self.stages = nn.ModuleList()
        inplanes = widths[0]
        for i, planes in enumerate(widths):
            self.stage_embed.append(nn.Linear(embed_dim, inplanes))
            layers = [InvertedResidual(inplanes, planes, 1 if i == 0 else 2, expansion)]
            layers += [InvertedResidual(planes, planes, 1, expansion) for _ in range(blocks - 1)]
            self.stages.append(nn.Sequential(*layers))
            inplanes = planes
        self.head = nn.Linear(inplanes + num_classes, num_classes)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, z: Tensor, h: Tensor, t: Tensor) -> Tensor:
        if z.ndim != 2 or z.shape[1] != self.num_classes or h.ndim != 4 or h.shape[1] != self.in_chans:
            raise ShapeError(f"BridgeConvNet expects z (b, {self.num_classes}) and h (b, {self.in_chans}, H, W); "
                             f"got {tuple(z.shape)} and {tuple(h.shape)}")  # fmt: skip
        if t.shape != z.shape[:1] or h.shape[0] != z.shape[0]:
            raise ShapeError(f"BridgeConvNet: t {tuple(t.shape)} and h {tuple(h.shape)} must have z's batch "
                             f"{z.shape[0]}")  # fmt: skip
        emb = self.embed(torch.cat([time_features(t, self.embed_dim), z], dim=-1))
        x = self.stem(h)
        for project, stage in zip(self.stage_embed, self.stages, strict=True):
            x = stage(x + project(emb)[:, :, None, None])
        return self.head(torch.cat([x.mean(dim=(-2, -1)), z], dim=-1))

    def flops(self, height: int, width: int) -> int:
        """FLOPs of one call on one example with an ``height x width`` feature map (``torch.utils.flop_counter``)."""
        param = next(self.parameters())
        z = torch.zeros(1, self.num_classes, dtype=param.dtype, device=param.device)
        h = torch.zeros(1, self.in_chans, height, width, dtype=param.dtype, device=param.device)
        t = torch.ones(1, dtype=param.dtype, device=param.device)
        with flop_counter() as counter, torch.no_grad():
            self(z, h, t)
        return int(counter.get_total_flops())
