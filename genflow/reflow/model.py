"""A segment-aware score model by composition: any backbone plus a learned per-segment time embedding.

SeqRF shares one network across the K segments and tells it the segment
through the time embedding. :class:`SegmentConditionedModel` does that without
forking a backbone: it adds a learned vector ``e_k`` (one row of an
``nn.Embedding(K, width)``, zero-initialised) to the output of the backbone's
time-embedding module, ``c = time_embed(t) + e_k``, through a forward hook on
that module. Every genflow backbone (MLP, DiT, U-ViT, the energy MLP) names
that module ``time_embed``. Zero initialisation makes a freshly wrapped
pretrained (1-rectified-flow) backbone compute exactly what it computed before,
so SeqRF training starts from the teacher.

A *segment-aware model* in genflow is any :class:`~genflow.model.base.ScoreModel`
that declares ``segments`` (a :class:`~genflow.reflow.segments.SegmentSpec`) and
accepts ``forward(x, t, *, segment=k)``; the segment samplers and objectives
work with any such model.

References:
    Yoon et al. 2024, "Sequential Flow Straightening for Generative Modeling" (SeqRF), sec. 3
    (segment-wise time embedding, shared backbone).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from genflow.config import build_component
from genflow.errors import ComponentError, ShapeError
from genflow.model.base import MODELS, ScoreModel
from genflow.reflow.segments import SegmentSpec
from genflow.validation import check_instance, check_state, check_time

__all__ = ["SegmentConditionedModel"]


def _width(module: nn.Module, where: str) -> int:
    linears = [m for m in module.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ComponentError(f"{where} has no nn.Linear whose out_features give the embedding width")
    return linears[-1].out_features


@MODELS.register("segment_conditioned")
class SegmentConditionedModel(ScoreModel):
    """``backbone`` with a learned per-segment vector added to its time embedding.

    Args:
        backbone: The shared network (a :class:`ScoreModel`, its config dict or registered name); it
            becomes a submodule of this model.
        segments: A :class:`SegmentSpec`, a number ``K`` of uniform segments, or a list of boundaries.
        time_embedding: Name of the backbone submodule whose ``(batch, width)`` output is the time
            embedding (``time_embed`` in every genflow backbone).

    Raises:
        ComponentError: the backbone has no such submodule, or it has no ``nn.Linear`` giving the width.
        SegmentSpecError: a bad segment specification.
    """

    config_components = {"backbone": "model"}  # stored as the backbone's config, rebuilt by from_config

    def __init__(
        self,
        backbone: ScoreModel | dict | str = "mlp",
        segments: SegmentSpec | int | Sequence[float] = 2,
        time_embedding: str = "time_embed",
    ) -> None:
        super().__init__()
        backbone = check_instance(build_component("model", backbone, "backbone"), ScoreModel, "backbone")
        self.backbone = backbone
        self.segments = SegmentSpec.recorded(self, segments)
        self.parameterization = backbone.parameterization
        try:
            embed = backbone.get_submodule(time_embedding)
        except AttributeError:
            raise ComponentError(
                f"{type(backbone).__name__} has no submodule {time_embedding!r} to add the segment embedding to; "
                "name its time-embedding module with time_embedding="
            ) from None
        self.segment_embed = nn.Embedding(self.segments.num_segments, _width(embed, f"{time_embedding} module"))
        nn.init.zeros_(self.segment_embed.weight)
        self._active: Tensor | None = None  # the segments of the call in progress (set only inside forward)
        embed.register_forward_hook(self._add_segment_embedding)

    def to_config(self) -> dict[str, Any]:
        config = super().to_config()
        config["backbone"] = self.backbone.to_config()  # the built backbone, also when given by name
        return config

    def initial_weights(self, state: dict[str, Tensor]) -> dict[str, Tensor]:
        """This model's weights from ``state``: the backbone's own weights (a 1-rectified-flow checkpoint) get
        the zero segment embedding, so ``init_from`` a teacher run starts SeqRF from the teacher; a state of
        this model is returned unchanged. (``Trainer.initialize_from`` calls it.)"""
        own = self.backbone.state_dict()
        if set(state) != set(own):
            return state
        return {**{f"backbone.{k}": v for k, v in state.items()}, "segment_embed.weight": self.segment_embed.weight}

    @property
    def num_blocks(self) -> int | None:  # type: ignore[override]
        """The backbone's (early exit passes through)."""
        return self.backbone.num_blocks

    @property
    def event_shape(self) -> tuple[int, ...] | None:
        """The backbone's event shape, if it declares one."""
        return getattr(self.backbone, "event_shape", None)

    def _add_segment_embedding(self, module: nn.Module, inputs: Any, output: Tensor) -> Tensor:
        if self._active is None:
            return output
        if output.ndim != 2 or output.shape[1] != self.segment_embed.embedding_dim:
            raise ComponentError(
                f"the time embedding must have shape (batch, {self.segment_embed.embedding_dim}); "
                f"got {tuple(output.shape)}"
            )
        return output + self.segment_embed(self._active.expand(output.shape[0]))

    def forward(
        self, x: Tensor, t: Tensor, *, cond: Any = None, exit: Any = None, segment: Tensor | int | None = None
    ) -> Tensor:
        """Predict at ``(x, t)`` in segment ``segment``.

        Args:
            x: States ``(batch, *event_shape)``.
            t: Times, scalar or ``(batch,)``.
            cond / exit: Passed to the backbone.
            segment: Segment index per example (``(batch,)`` int tensor) or one int for all; default
                :meth:`SegmentSpec.segment_of` of ``t``.

        Raises:
            SegmentSpecError: a segment index out of range or not an integer.
            ShapeError: ``t`` or ``segment`` is not a scalar or ``(batch,)``.
            DTypeError: ``x`` is not a floating tensor.
        """
        x = check_state(x)
        times = check_time(t, x.shape[0], like=x)  # in x's dtype, as the backbone sees them
        if segment is None:  # derived from t: in range by construction
            segment = self.segments.segment_of(times)
        else:
            self.segments.check_index(segment)
        segment = torch.as_tensor(segment, device=x.device)
        if segment.ndim > 1 or (segment.ndim == 1 and segment.shape[0] != x.shape[0]):
            raise ShapeError(f"segment must be a scalar or of shape ({x.shape[0]},); got {tuple(segment.shape)}")
        kwargs = {k: v for k, v in (("cond", cond), ("exit", exit)) if v is not None}
        self._active = segment.reshape(-1)
        try:
            return self.backbone(x, t, **kwargs)
        finally:
            self._active = None
