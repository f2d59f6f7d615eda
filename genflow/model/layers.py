"""Layers shared by the transformer backbones: time and label embeddings, 2-D positions, unpatchify.

References:
    Vaswani et al. 2017, "Attention Is All You Need", sec. 3.5 (sinusoidal embeddings).
    Peebles & Xie 2023, "Scalable Diffusion Models with Transformers", sec. 3.1 (timestep and
    label embeddings, label dropout for classifier-free guidance, 2-D sin-cos positions).
    Ho & Salimans 2022, "Classifier-Free Diffusion Guidance", sec. 3.2 (null label).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from genflow.errors import ShapeError

__all__ = [
    "sinusoidal_embedding",
    "sincos_position_embedding_2d",
    "TimestepEmbedding",
    "LabelEmbedding",
    "unpatchify",
]

TIME_SCALE = 1000.0
"""``t`` in ``[0, 1]`` is multiplied by this before the sinusoids, so the frequencies cover the
same range as the integer timesteps 0..999 the embedding was designed for."""


def sinusoidal_embedding(positions: Tensor, dim: int, max_period: float = 10_000.0) -> Tensor:
    """``[cos(p w_i), sin(p w_i)]`` with ``w_i = max_period^(-i / (dim/2))``.

    Args:
        positions: Real positions of any shape ``S``.
        dim: Embedding size (even).
        max_period: Longest wavelength.

    Returns:
        Embeddings of shape ``(*S, dim)`` in ``positions``' dtype.
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=positions.dtype, device=positions.device) / half)
    args = positions.unsqueeze(-1) * freqs
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def sincos_position_embedding_2d(grid_size: int, dim: int) -> Tensor:
    """Fixed 2-D sin-cos positions for a ``grid_size x grid_size`` patch grid (row-major).

    Half of the channels encode the row, the other half the column.

    Returns:
        Tensor of shape ``(grid_size**2, dim)`` (float32).

    Raises:
        ShapeError: ``dim`` is not a multiple of 4.
    """
    if dim % 4 != 0:
        raise ShapeError(f"2-D sin-cos positions need hidden_size divisible by 4; got {dim}")
    coords = torch.arange(grid_size, dtype=torch.float64)
    rows, cols = torch.meshgrid(coords, coords, indexing="ij")
    emb = torch.cat([sinusoidal_embedding(rows.flatten(), dim // 2), sinusoidal_embedding(cols.flatten(), dim // 2)], 1)
    return emb.float()


class TimestepEmbedding(nn.Module):
    """Sinusoidal embedding of ``TIME_SCALE * t`` followed by a two-layer SiLU MLP.

    Args:
        hidden_size: Output size.
        frequency_dim: Number of sinusoidal features.

    Shapes:
        t: ``(batch,)``; output: ``(batch, hidden_size)``.
    """

    def __init__(self, hidden_size: int, frequency_dim: int = 256) -> None:
        super().__init__()
        self.frequency_dim = frequency_dim
        self.mlp = nn.Sequential(nn.Linear(frequency_dim, hidden_size), nn.SiLU(), nn.Linear(hidden_size, hidden_size))

    def forward(self, t: Tensor) -> Tensor:
        return self.mlp(sinusoidal_embedding(TIME_SCALE * t, self.frequency_dim))


class LabelEmbedding(nn.Module):
    """Class-label table with an extra *null* row (index ``num_classes``) for classifier-free guidance.

    ``cond=None`` means "no label": every sample gets the null row. In training mode
    each label is replaced by the null label with probability ``dropout``; this draw
    uses ``torch.rand`` on the labels' device (the global generator; the
    :class:`~genflow.train.Trainer` seeds it per step inside a forked RNG state, so
    training and resume are reproducible). Call :meth:`drop` with an explicit
    generator and set ``dropout=0`` where the draw must not depend on global state.

    Args:
        num_classes: Number of real classes (> 0).
        hidden_size: Embedding size.
        dropout: Label-dropout probability in training mode, in ``[0, 1]``.

    Shapes:
        labels: ``(batch,)`` integers in ``[0, num_classes]``; output: ``(batch, hidden_size)``.
    """

    def __init__(self, num_classes: int, hidden_size: int, dropout: float) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.dropout = dropout
        self.table = nn.Embedding(num_classes + 1, hidden_size)

    @property
    def null_label(self) -> int:
        """Index of the unconditional (null) row."""
        return self.num_classes

    def drop(self, labels: Tensor, probability: float, generator: torch.Generator | None = None) -> Tensor:
        """Replace each label by the null label with ``probability`` (draws on ``generator``'s device)."""
        device = labels.device if generator is None else generator.device
        keep = torch.rand(labels.shape, generator=generator, device=device).to(labels.device) >= probability
        return torch.where(keep, labels, torch.full_like(labels, self.null_label))

    def forward(self, labels: Tensor) -> Tensor:
        if self.training and self.dropout > 0:
            labels = self.drop(labels, self.dropout)
        return self.table(labels)


def unpatchify(tokens: Tensor, patch_size: int, channels: int) -> Tensor:
    """Inverse of a row-major patch embedding: ``(B, L, p*p*C) -> (B, C, sqrt(L) p, sqrt(L) p)``."""
    b, length, _ = tokens.shape
    side = math.isqrt(length)
    x = tokens.reshape(b, side, side, patch_size, patch_size, channels)
    return torch.einsum("bhwpqc->bchpwq", x).reshape(b, channels, side * patch_size, side * patch_size)
