"""A residual MLP score network for flat data, e.g. 2-D toy distributions.

References:
    Song et al. 2021, "Score-Based Generative Modeling through SDEs", app. H (noise-conditional
    networks; time enters through a learned embedding added inside every block);
    Vaswani et al. 2017, sec. 3.5 (sinusoidal embedding of ``t``).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from genflow.errors import ConfigError
from genflow.model.base import MODELS, ScoreModel
from genflow.model.inputs import check_model_input, check_no_cond
from genflow.model.layers import TimestepEmbedding
from genflow.process.gaussian import check_parameterization

__all__ = ["MLPScoreNet"]


class _TimeResidualBlock(nn.Module):
    """``h + W2 SiLU(W1 SiLU(LN h) + A c)``: a residual branch whose pre-activation is shifted by ``c``."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(hidden_size)
        self.linear1 = nn.Linear(hidden_size, hidden_size)
        self.time_proj = nn.Linear(hidden_size, hidden_size)
        self.linear2 = nn.Linear(hidden_size, hidden_size)
        self.act = nn.SiLU()

    def forward(self, h: Tensor, c: Tensor) -> Tensor:
        return h + self.linear2(self.act(self.linear1(self.act(self.norm(h))) + self.time_proj(c)))


@MODELS.register("mlp")
class MLPScoreNet(ScoreModel):
    """Residual MLP predicting on flat states ``(batch, dim)``.

    ``c = MLP(sinusoid(1000 t))``; ``h = W_in x``; ``depth`` residual blocks each add
    ``c`` (projected) inside their branch; ``out = W_out SiLU(LN h)``. Unconditional;
    it has no exitable blocks, so ``exit`` is ignored (the ``ScoreModel`` contract).

    Args:
        dim: Size of each sample (event shape ``(dim,)``).
        hidden_size: Width of the hidden layers.
        depth: Number of residual blocks.
        parameterization: What the output predicts (``eps``, ``x0``, ``v``, ``score``, ``velocity``).

    Raises:
        ConfigError: a size that is not a positive int (``depth``: >= 0).
        ParameterizationError: unknown ``parameterization``.
    """

    def __init__(self, dim: int = 2, hidden_size: int = 128, depth: int = 3, parameterization: str = "eps") -> None:
        super().__init__()
        for name, value, lo in (("dim", dim, 1), ("hidden_size", hidden_size, 1), ("depth", depth, 0)):
            if not isinstance(value, int) or isinstance(value, bool) or value < lo:
                raise ConfigError(f"{name} must be an int >= {lo}; got {value!r}")
        self.parameterization = check_parameterization(parameterization)
        self.dim = dim
        self.time_embed = TimestepEmbedding(hidden_size, frequency_dim=64)
        self.input = nn.Linear(dim, hidden_size)
        self.blocks = nn.ModuleList(_TimeResidualBlock(hidden_size) for _ in range(depth))
        self.out_norm = nn.LayerNorm(hidden_size)
        self.output = nn.Linear(hidden_size, dim)

    @property
    def event_shape(self) -> tuple[int]:
        """Shape of one sample: ``(dim,)``."""
        return (self.dim,)

    def forward(self, x: Tensor, t: Tensor, *, cond: Any = None, exit: Any = None) -> Tensor:
        """Predict at ``x`` and times ``t``.

        Args:
            x: Noisy states.
            t: Times in ``[0, 1]`` (t = 0 data, t = 1 noise), scalar or per sample.
            cond: Must be ``None`` (unconditional).
            exit: Ignored (no exitable blocks).

        Returns:
            The prediction in ``parameterization``, shaped like ``x``.

        Raises:
            ShapeError: ``x`` is not ``(batch, dim)`` or ``t`` not scalar / ``(batch,)``.
            DTypeError: ``x`` is not floating or differs from the parameters' dtype.
            ComponentError: ``cond`` was given.

        Shapes:
            x: ``(batch, dim)``; t: ``(batch,)``; output: ``(batch, dim)``.
        """
        x, t = check_model_input(x, t, self.event_shape, self.input.weight.dtype, "MLPScoreNet")
        check_no_cond(cond, "MLPScoreNet")
        c = self.time_embed(t)
        h = self.input(x)
        for block in self.blocks:
            h = block(h, c)
        return self.output(nn.functional.silu(self.out_norm(h)))
