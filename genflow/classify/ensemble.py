"""A deep ensemble: ``M`` classifiers whose predictive distributions are averaged.

``p(y | x) = 1/M sum_m softmax(f_m(x))`` (the default), or, with
``combine="logits"``, ``softmax(1/M sum_m f_m(x))``. :meth:`Ensemble.forward`
returns log-probabilities, which are valid logits (``softmax`` of them gives
``p`` back), so an ensemble is used wherever a classifier is.

References:
    Lakshminarayanan et al. 2017, "Simple and Scalable Predictive Uncertainty Estimation using Deep
    Ensembles", sec. 2.4 (the uniform mixture of members).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from genflow.classify.base import CLASSIFIERS, Classifier
from genflow.config import Configurable
from genflow.errors import ComponentError, ConfigError
from genflow.validation import check_instance

__all__ = ["Ensemble", "COMBINE_RULES", "combine_logits"]

COMBINE_RULES = ("probs", "logits")


def combine_logits(member_logits: Tensor, combine: str = "probs") -> Tensor:
    """Log-probabilities of the ensemble from member logits ``(M, ..., C)`` (members on the first axis).

    ``"probs"``: ``log(1/M sum_m softmax(z_m)) = logsumexp_m log_softmax(z_m) - log M`` (stable for any logits);
    ``"logits"``: ``log_softmax(1/M sum_m z_m)``.

    Raises:
        ConfigError: unknown ``combine``.
    """
    if combine not in COMBINE_RULES:
        raise ConfigError(f"combine must be one of {', '.join(COMBINE_RULES)}; got {combine!r}")
    if combine == "logits":
        return torch.log_softmax(member_logits.mean(0), dim=-1)
    return torch.logsumexp(torch.log_softmax(member_logits, dim=-1), dim=0) - math.log(member_logits.shape[0])


class Ensemble(Configurable, nn.Module):
    """Members with the same classes and input shape, combined by averaging.

    Args:
        members: Classifiers (or their config dicts, rebuilt through ``CLASSIFIERS``).
        combine: ``"probs"`` (mean of member probabilities) or ``"logits"`` (mean of member logits).

    Raises:
        ConfigError: no members or an unknown ``combine``.
        ComponentError: a member that is not a :class:`Classifier`, or members that disagree on
            ``num_classes``, ``in_chans`` or ``image_size``.

    Shapes:
        x: ``(batch, in_chans, image_size, image_size)``; output ``(batch, num_classes)``.
    """

    def __init__(self, members: Sequence[Classifier | dict[str, Any]], combine: str = "probs") -> None:
        nn.Module.__init__(self)
        if combine not in COMBINE_RULES:
            raise ConfigError(f"combine must be one of {', '.join(COMBINE_RULES)}; got {combine!r}")
        built = [CLASSIFIERS.from_config(m) if isinstance(m, dict) else m for m in members]
        if not built:
            raise ConfigError("an ensemble needs at least one member; got none")
        for i, member in enumerate(built):
            check_instance(member, Classifier, f"members[{i}]")
        first = built[0]
        for i, member in enumerate(built[1:], start=1):
            for attr in ("num_classes", "in_chans", "image_size"):
                if getattr(member, attr) != getattr(first, attr):
                    raise ComponentError(f"members[{i}].{attr} must equal members[0]'s {getattr(first, attr)}; "
                                         f"got {getattr(member, attr)}")  # fmt: skip
        self.members = nn.ModuleList(built)
        self.combine = combine
        self.num_classes, self.in_chans, self.image_size = first.num_classes, first.in_chans, first.image_size

    def __len__(self) -> int:
        return len(self.members)

    def member_logits(self, x: Tensor) -> Tensor:
        """Every member's logits, ``(M, batch, num_classes)``."""
        return torch.stack([member(x) for member in self.members])

    def forward(self, x: Tensor) -> Tensor:
        """Log of the ensemble's predictive distribution ``(batch, num_classes)`` (usable as logits)."""
        return combine_logits(self.member_logits(x), self.combine)

    def predict_proba(self, x: Tensor) -> Tensor:
        """The ensemble's probabilities ``(batch, num_classes)``."""
        return self(x).softmax(-1)

    def features(self, x: Tensor) -> list[Tensor]:
        """Each member's early feature map (members may differ in architecture, so a list)."""
        return [member.features(x) for member in self.members]

    def flops(self, batch: int = 1) -> int:
        """FLOPs of one ensemble forward pass: the sum of the members' (averaging costs no matmul)."""
        return sum(member.flops(batch) for member in self.members)

    def subset(self, count: int) -> Ensemble:
        """The ensemble of the first ``count`` members (sharing their modules, same ``combine``)."""
        if not 1 <= count <= len(self.members):
            raise ConfigError(f"count must be in [1, {len(self.members)}]; got {count}")
        return Ensemble(list(self.members)[:count], combine=self.combine)

    def to_config(self) -> dict[str, Any]:
        """``{"name": "Ensemble", "members": [member configs], "combine": ...}``."""
        return {"name": "Ensemble", "members": [m.to_config() for m in self.members], "combine": self.combine}
