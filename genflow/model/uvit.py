"""U-ViT: a vision transformer treating time, label and patches as tokens, with long skips.

References:
    Bao et al. 2023, "All are Worth Words: A ViT Backbone for Diffusion Models", sec. 3
    (tokens, long skip connections fused by a linear layer on ``[h ; skip]``, final
    3x3 convolution); Moon et al. 2024 (ASE), sec. 3 (dropped decoder blocks keep their
    skip-fusion layer).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from genflow.errors import ConfigError
from genflow.model.base import MODELS, ScoreModel
from genflow.model.depths import prepare_transformer_inputs, run_on_prefix
from genflow.model.flops import BlockFlops, measure_block_flops
from genflow.model.inputs import check_backbone_sizes
from genflow.model.layers import LabelEmbedding, TimestepEmbedding, unpatchify
from genflow.process.gaussian import check_parameterization

__all__ = ["UViT", "UViTBlock"]


class UViTBlock(nn.Module):
    """Pre-norm transformer block, optionally preceded by a skip-fusion linear layer.

    :meth:`fuse` computes ``h <- W [h ; skip] + b`` (out-blocks only); :meth:`transform`
    the attention and MLP residual branches. An early exit skips :meth:`transform` only.

    Shapes:
        h, skip: ``(batch, tokens, hidden)``; outputs like ``h``.
    """

    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float, skip: bool = False) -> None:
        from timm.layers import Attention, Mlp  # imported on first build: timm adds ~1.3 s to `import genflow`

        super().__init__()
        self.skip_linear = nn.Linear(2 * hidden_size, hidden_size) if skip else None
        self.norm1 = nn.LayerNorm(hidden_size)
        self.attn = Attention(hidden_size, num_heads=num_heads, qkv_bias=False)
        self.norm2 = nn.LayerNorm(hidden_size)
        self.mlp = Mlp(hidden_size, int(hidden_size * mlp_ratio))

    def fuse(self, h: Tensor, skip: Tensor) -> Tensor:
        """Long-skip fusion ``Linear([h ; skip])``."""
        return self.skip_linear(torch.cat([h, skip], dim=-1))

    def transform(self, h: Tensor) -> Tensor:
        """Attention then MLP, each a residual branch on a layer-normed input."""
        h = h + self.attn(self.norm1(h))
        return h + self.mlp(self.norm2(h))

    def forward(self, h: Tensor, skip: Tensor | None = None) -> Tensor:
        return self.transform(h if skip is None else self.fuse(h, skip))


@MODELS.register("uvit")
class UViT(ScoreModel):
    """U-ViT on square images: ``[time token, (label token), patch tokens]`` through a ViT with long skips.

    ``depth`` (odd) transformer blocks: ``depth // 2`` in-blocks whose outputs are
    stored, a mid block, and ``depth // 2`` out-blocks; out-block ``k`` first fuses
    the output of in-block ``depth // 2 - 1 - k`` through its skip-fusion linear layer.
    Patch tokens are read out by layer norm + linear, unpatchified, and smoothed by a
    3x3 convolution.

    Early exit: ``num_blocks = depth // 2`` (the out-blocks); ``exit`` ranges over
    ``[0, num_blocks]``. The in-blocks and the mid block always run. ``exit=d`` runs the
    first ``d`` out-blocks (in execution order) fully; each later out-block keeps only
    its skip-fusion layer (attention and MLP skipped), so every long skip is still
    fused. Per-sample depths ``(batch,)`` group samples by depth as in :class:`~genflow.model.dit.DiT`.

    Args:
        image_size: Height and width of the input (square).
        patch_size: Patch side; must divide ``image_size``.
        in_channels: Input (and output) channels.
        hidden_size: Token width; divisible by ``num_heads``.
        depth: Total number of transformer blocks, odd.
        num_heads: Attention heads.
        mlp_ratio: MLP hidden width as a multiple of ``hidden_size``.
        num_classes: Number of class labels (adds a label token); 0 for unconditional.
        class_dropout: Training-mode probability of replacing a label by the null label.
        parameterization: What the output predicts (``eps``, ``x0``, ``v``, ``score``, ``velocity``).

    Raises:
        ConfigError: inconsistent sizes, an even ``depth``, or a dropout outside ``[0, 1]``.
        ParameterizationError: unknown ``parameterization``.
    """

    def __init__(
        self,
        image_size: int = 8,
        patch_size: int = 2,
        in_channels: int = 1,
        hidden_size: int = 64,
        depth: int = 7,
        num_heads: int = 4,
        mlp_ratio: float = 4.0,
        num_classes: int = 0,
        class_dropout: float = 0.1,
        parameterization: str = "eps",
    ) -> None:
        super().__init__()
        check_backbone_sizes(
            image_size, patch_size, in_channels, hidden_size, depth, num_heads, num_classes, class_dropout
        )
        if depth % 2 == 0:
            raise ConfigError(f"U-ViT depth must be odd (in-blocks, a mid block, out-blocks); got {depth}")
        self.parameterization = check_parameterization(parameterization)
        self.image_size, self.patch_size, self.in_channels = image_size, patch_size, in_channels
        self.num_classes = num_classes
        self.num_blocks = depth // 2
        from timm.layers import PatchEmbed  # imported on first build, as in UViTBlock

        self.patch_embed = PatchEmbed(image_size, patch_size, in_channels, hidden_size)
        self.time_embed = TimestepEmbedding(hidden_size)
        self.label_embed = LabelEmbedding(num_classes, hidden_size, class_dropout) if num_classes > 0 else None
        self.num_extra_tokens = 1 + (num_classes > 0)
        num_tokens = self.num_extra_tokens + (image_size // patch_size) ** 2
        self.pos_embed = nn.Parameter(torch.zeros(1, num_tokens, hidden_size))
        self.in_blocks = nn.ModuleList(UViTBlock(hidden_size, num_heads, mlp_ratio) for _ in range(self.num_blocks))
        self.mid_block = UViTBlock(hidden_size, num_heads, mlp_ratio)
        self.out_blocks = nn.ModuleList(
            UViTBlock(hidden_size, num_heads, mlp_ratio, skip=True) for _ in range(self.num_blocks)
        )
        self.norm = nn.LayerNorm(hidden_size)
        self.decoder = nn.Linear(hidden_size, patch_size * patch_size * in_channels)
        self.final_conv = nn.Conv2d(in_channels, in_channels, 3, padding=1)
        self._init_weights()

    @property
    def event_shape(self) -> tuple[int, int, int]:
        """Shape of one sample: ``(in_channels, image_size, image_size)``."""
        return (self.in_channels, self.image_size, self.image_size)

    def _init_weights(self) -> None:
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        if self.label_embed is not None:
            nn.init.trunc_normal_(self.label_embed.table.weight, std=0.02)

    def forward(self, x: Tensor, t: Tensor, *, cond: Any = None, exit: Any = None) -> Tensor:
        """Predict at ``x`` and times ``t``.

        Args:
            x: Noisy images.
            t: Times in ``[0, 1]`` (t = 0 data, t = 1 noise), scalar or per sample.
            cond: Class labels (long) in ``[0, num_classes]``, ``num_classes`` meaning
                unconditional; ``None`` gives the null label. Must be ``None`` if ``num_classes=0``.
            exit: ``None`` (all out-blocks), an int in ``[0, num_blocks]`` or per-sample depths.

        Returns:
            The prediction in ``parameterization``, shaped like ``x``.

        Raises:
            ShapeError, DTypeError, ComponentError: bad ``x``, ``t``, ``cond`` or ``exit``.

        Shapes:
            x: ``(batch, in_channels, image_size, image_size)``; t, cond, exit: ``(batch,)``.
        """
        x, t, labels, depths = prepare_transformer_inputs(self, x, t, cond, exit, "UViT")
        tokens = [self.time_embed(t).unsqueeze(1)]
        if self.label_embed is not None:
            tokens.append(self.label_embed(labels).unsqueeze(1))
        h = torch.cat([*tokens, self.patch_embed(x)], dim=1) + self.pos_embed
        skips = []
        for block in self.in_blocks:
            h = block(h)
            skips.append(h)
        h = self.mid_block(h)
        for block, n in zip(self.out_blocks, depths.active, strict=True):
            h = run_on_prefix(block.transform, n, block.fuse(h, skips.pop()))
        patches = self.decoder(self.norm(h))[:, self.num_extra_tokens :]
        out = self.final_conv(unpatchify(patches, self.patch_size, self.in_channels))
        return depths.unsort(out)

    def block_flops(self, x: Tensor, t: Tensor, *, cond: Any = None) -> BlockFlops:
        """FLOPs each out-block's attention + MLP costs, and of the whole forward pass.

        Returns:
            :class:`~genflow.model.flops.BlockFlops`: ``blocks[k]`` excludes out-block ``k``'s
            skip-fusion layer (it runs at any exit); ``exit=d`` costs ``total - sum(blocks[d:])``.
        """
        names = [(f"out_blocks.{k}.attn", f"out_blocks.{k}.mlp") for k in range(self.num_blocks)]
        return measure_block_flops(self, x, t, names, cond=cond)
