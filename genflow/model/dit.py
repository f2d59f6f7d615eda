"""DiT: a vision transformer on image patches with adaLN-Zero time/label conditioning.

References:
    Peebles & Xie 2023, "Scalable Diffusion Models with Transformers", sec. 3.1-3.2
    (patchify, adaLN-Zero blocks, final layer, label dropout); Moon et al. 2024 (ASE),
    sec. 3 (early exit: first ``d`` blocks, then the shared final layer).
"""

from __future__ import annotations

import functools
from typing import Any

from torch import Tensor, nn

from genflow.errors import ConfigError
from genflow.model.base import MODELS, ScoreModel
from genflow.model.depths import prepare_transformer_inputs, run_on_prefix
from genflow.model.flops import BlockFlops, measure_block_flops
from genflow.model.inputs import check_backbone_sizes
from genflow.model.layers import LabelEmbedding, TimestepEmbedding, sincos_position_embedding_2d, unpatchify
from genflow.process.gaussian import check_parameterization

__all__ = ["DiT", "DiTBlock"]


def _modulate(h: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """Adaptive layer norm's affine part, per sample: ``h (1 + scale) + shift``."""
    return h * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


def _layer_norm(size: int) -> nn.LayerNorm:
    return nn.LayerNorm(size, elementwise_affine=False, eps=1e-6)


class DiTBlock(nn.Module):
    """Pre-norm transformer block whose norms are modulated by the conditioning ``c`` (adaLN-Zero).

    ``c`` regresses shift, scale and a residual gate for the attention and the MLP
    branch; the regression is zero-initialised so the block starts as the identity.

    Shapes:
        h: ``(batch, tokens, hidden)``; c: ``(batch, hidden)``; output like ``h``.
    """

    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float) -> None:
        from timm.layers import Attention, Mlp  # imported on first build: timm adds ~1.3 s to `import genflow`

        super().__init__()
        self.norm1 = _layer_norm(hidden_size)
        self.attn = Attention(hidden_size, num_heads=num_heads, qkv_bias=True)
        self.norm2 = _layer_norm(hidden_size)
        gelu = functools.partial(nn.GELU, approximate="tanh")
        self.mlp = Mlp(hidden_size, int(hidden_size * mlp_ratio), act_layer=gelu)
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 6 * hidden_size))

    def forward(self, h: Tensor, c: Tensor) -> Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(c).chunk(6, dim=-1)
        h = h + gate1.unsqueeze(1) * self.attn(_modulate(self.norm1(h), shift1, scale1))
        return h + gate2.unsqueeze(1) * self.mlp(_modulate(self.norm2(h), shift2, scale2))


class _FinalLayer(nn.Module):
    """adaLN norm + linear to ``patch * patch * channels`` values per token (zero-initialised)."""

    def __init__(self, hidden_size: int, out_size: int) -> None:
        super().__init__()
        self.norm = _layer_norm(hidden_size)
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 2 * hidden_size))
        self.linear = nn.Linear(hidden_size, out_size)

    def forward(self, h: Tensor, c: Tensor) -> Tensor:
        shift, scale = self.modulation(c).chunk(2, dim=-1)
        return self.linear(_modulate(self.norm(h), shift, scale))


@MODELS.register("dit")
class DiT(ScoreModel):
    """Diffusion transformer (DiT) on square images, built from ``timm.layers``.

    ``x`` is cut into ``patch_size`` patches (``timm`` ``PatchEmbed``), given fixed 2-D
    sin-cos positions, passed through ``depth`` :class:`DiTBlock` s conditioned on
    ``c = MLP(sinusoid(1000 t)) [+ label embedding]``, and mapped back to pixels by a
    zero-initialised adaLN final layer, so a fresh model outputs zeros.

    Early exit: ``exit=d`` runs the first ``d`` blocks, then the shared final layer.
    Per-sample depths ``(batch,)`` sort the batch by depth once and run block ``k``
    only on the samples whose depth exceeds ``k``; the others keep their hidden state.

    Args:
        image_size: Height and width of the input (square).
        patch_size: Patch side; must divide ``image_size``.
        in_channels: Input (and output) channels.
        hidden_size: Token width; divisible by ``num_heads`` and by 4.
        depth: Number of transformer blocks (``num_blocks``).
        num_heads: Attention heads.
        mlp_ratio: MLP hidden width as a multiple of ``hidden_size``.
        num_classes: Number of class labels; 0 for an unconditional model.
        class_dropout: Probability, in training mode, of replacing a label by the null
            label (classifier-free guidance); see :class:`~genflow.model.layers.LabelEmbedding`.
        parameterization: What the output predicts (``eps``, ``x0``, ``v``, ``score``, ``velocity``).

    Raises:
        ConfigError: inconsistent sizes or a dropout outside ``[0, 1]``.
        ParameterizationError: unknown ``parameterization``.
    """

    def __init__(
        self,
        image_size: int = 8,
        patch_size: int = 2,
        in_channels: int = 1,
        hidden_size: int = 64,
        depth: int = 4,
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
        if hidden_size % 4:
            raise ConfigError(f"DiT's 2-D sin-cos positions need hidden_size divisible by 4; got {hidden_size}")
        self.parameterization = check_parameterization(parameterization)
        self.image_size, self.patch_size, self.in_channels = image_size, patch_size, in_channels
        self.num_classes = num_classes
        self.num_blocks = depth
        from timm.layers import PatchEmbed  # imported on first build, as in DiTBlock

        self.patch_embed = PatchEmbed(image_size, patch_size, in_channels, hidden_size)
        grid = image_size // patch_size
        self.register_buffer("pos_embed", sincos_position_embedding_2d(grid, hidden_size), persistent=False)
        self.time_embed = TimestepEmbedding(hidden_size)
        self.label_embed = LabelEmbedding(num_classes, hidden_size, class_dropout) if num_classes > 0 else None
        self.blocks = nn.ModuleList(DiTBlock(hidden_size, num_heads, mlp_ratio) for _ in range(depth))
        self.final = _FinalLayer(hidden_size, patch_size * patch_size * in_channels)
        self._init_weights()

    @property
    def event_shape(self) -> tuple[int, int, int]:
        """Shape of one sample: ``(in_channels, image_size, image_size)``."""
        return (self.in_channels, self.image_size, self.image_size)

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        w = self.patch_embed.proj.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.normal_(self.time_embed.mlp[0].weight, std=0.02)
        nn.init.normal_(self.time_embed.mlp[2].weight, std=0.02)
        if self.label_embed is not None:
            nn.init.normal_(self.label_embed.table.weight, std=0.02)
        # adaLN-Zero: every block and the final layer start as identity / zero output
        for layer in [*(b.modulation[1] for b in self.blocks), self.final.modulation[1], self.final.linear]:
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: Tensor, t: Tensor, *, cond: Any = None, exit: Any = None) -> Tensor:
        """Predict at ``x`` and times ``t``.

        Args:
            x: Noisy images.
            t: Times in ``[0, 1]`` (t = 0 data, t = 1 noise), scalar or per sample.
            cond: Class labels (long) in ``[0, num_classes]``, ``num_classes`` meaning
                unconditional; ``None`` gives the null label. Must be ``None`` if ``num_classes=0``.
            exit: ``None`` (all blocks), an int in ``[0, num_blocks]`` or per-sample depths.

        Returns:
            The prediction in ``parameterization``, shaped like ``x``.

        Raises:
            ShapeError, DTypeError, ComponentError: bad ``x``, ``t``, ``cond`` or ``exit``.

        Shapes:
            x: ``(batch, in_channels, image_size, image_size)``; t, cond, exit: ``(batch,)``.
        """
        x, t, labels, depths = prepare_transformer_inputs(self, x, t, cond, exit, "DiT")
        c = self.time_embed(t)
        if self.label_embed is not None:
            c = c + self.label_embed(labels)
        h = self.patch_embed(x) + self.pos_embed
        for block, n in zip(self.blocks, depths.active, strict=True):
            if n == 0:
                break  # depths are sorted: no later block runs either
            h = run_on_prefix(block, n, h, c)
        out = unpatchify(self.final(h, c), self.patch_size, self.in_channels)
        return depths.unsort(out)

    def block_flops(self, x: Tensor, t: Tensor, *, cond: Any = None) -> BlockFlops:
        """FLOPs per transformer block and of the whole forward pass, measured on ``(x, t)``.

        Returns:
            :class:`~genflow.model.flops.BlockFlops`; ``exit=d`` costs ``total - sum(blocks[d:])``.
        """
        names = [(f"blocks.{k}",) for k in range(self.num_blocks)]
        return measure_block_flops(self, x, t, names, cond=cond)
