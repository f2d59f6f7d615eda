"""BatchEnsemble: ``M`` members sharing one network, each with rank-1 fast weights on every conv and linear layer.

Member ``i`` of a layer with shared weight ``W`` uses ``W_i = W * (s_i r_i^T)``, computed without
forming ``W_i``: ``y = (W (x * r_i)) * s_i + b_i`` (``r_i`` scales the input channels, ``s_i``
the output channels, ``b_i`` is the member's own bias where the layer has one). A forward pass
tiles the batch ``M`` times (member-major) and runs the shared network once on the
``M b`` images, so the members cost ``M`` times one network's FLOPs but only
``M (in + out (+ out))`` extra parameters per layer. Batch normalisation is shared
(statistics over all members' activations). :func:`batch_ensemble` turns any registered
classifier into one, since the fast weights wrap the layers it already has.

References:
    Wen, Tran and Ba 2020, "BatchEnsemble: An Alternative Approach to Efficient Ensemble and Lifelong
    Learning", ICLR, eq. 1-3 (rank-1 fast weights, vectorised over members).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genflow.classify.base import CLASSIFIERS, Classifier, check_positive_int
from genflow.classify.ensemble import combine_logits
from genflow.config import build_component
from genflow.errors import ConfigError
from genflow.validation import check_instance

__all__ = ["BatchEnsemble", "Rank1Layer", "FAST_WEIGHT_INITS"]

FAST_WEIGHT_INITS = ("random_sign", "normal", "ones")


class Rank1Layer(nn.Module):
    """A conv or linear layer with per-member rank-1 fast weights ``r`` (inputs), ``s`` (outputs), bias ``b``.

    Args:
        layer: The shared ``nn.Conv2d`` or ``nn.Linear`` (its bias, if any, becomes every member's bias).
        members: ``M``.
        init: ``"random_sign"`` (entries +-1, the paper's choice), ``"normal"`` (``N(1, 0.5^2)``) or ``"ones"``.

    Shapes:
        x: ``(M b, in, ...)`` member-major; output ``(M b, out, ...)``.
    """

    def __init__(self, layer: nn.Conv2d | nn.Linear, members: int, init: str) -> None:
        super().__init__()
        conv = isinstance(layer, nn.Conv2d)
        n_in, n_out = (layer.in_channels, layer.out_channels) if conv else (layer.in_features, layer.out_features)
        self.layer, self.members, self.conv = layer, members, conv
        self.r = nn.Parameter(self._init(torch.empty(members, n_in, dtype=layer.weight.dtype), init))
        self.s = nn.Parameter(self._init(torch.empty(members, n_out, dtype=layer.weight.dtype), init))
        bias = layer.bias
        layer.register_parameter("bias", None)  # the shared bias becomes each member's own starting bias
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone().expand(members, -1).contiguous())

    @staticmethod
    def _init(t: Tensor, init: str) -> Tensor:
        if init == "ones":
            return t.fill_(1.0)
        if init == "normal":
            return t.normal_(1.0, 0.5)
        return torch.randint(0, 2, t.shape).to(t.dtype).mul_(2.0).sub_(1.0)

    def _per_row(self, v: Tensor, batch: int, ndim: int) -> Tensor:
        return v.repeat_interleave(batch, dim=0).reshape(v.shape[0] * batch, v.shape[1], *([1] * (ndim - 2)))

    def forward(self, x: Tensor) -> Tensor:
        batch = x.shape[0] // self.members
        x = x * self._per_row(self.r, batch, x.ndim)
        y = self.layer._conv_forward(x, self.layer.weight, None) if self.conv else F.linear(x, self.layer.weight)
        y = y * self._per_row(self.s, batch, y.ndim)
        return y if self.bias is None else y + self._per_row(self.bias, batch, y.ndim)


def _wrap_layers(module: nn.Module, members: int, init: str) -> int:
    count = 0
    for name, child in module.named_children():
        if isinstance(child, (nn.Conv2d, nn.Linear)):
            setattr(module, name, Rank1Layer(child, members, init))
            count += 1
        else:
            count += _wrap_layers(child, members, init)
    return count


@CLASSIFIERS.register("batch_ensemble")
class BatchEnsemble(Classifier):
    """``members`` rank-1 members of one registered classifier (see the module docstring).

    ``forward(x)`` gives the members' mean predictive distribution as log-probabilities (usable as
    logits, as :class:`~genflow.classify.Ensemble`'s); ``member_logits(x)`` (or ``forward(x,
    per_member=True)``, which also works through ``DistributedDataParallel``) gives ``(M, b, C)``.

    Args:
        base: The shared network: a :class:`~genflow.classify.Classifier` or its config (the instance is
            taken over: its conv and linear layers are wrapped in place).
        members: ``M >= 1``.
        init: Fast-weight initialisation (:data:`FAST_WEIGHT_INITS`).

    Raises:
        ConfigError: ``members`` not a positive int, an unknown ``init``, or a base without conv/linear layers.
        ComponentError: ``base`` is not a classifier.
    """

    config_components: ClassVar[dict[str, str]] = {"base": "classifier"}

    def __init__(self, base: Classifier | dict[str, Any], members: int = 4, init: str = "random_sign") -> None:
        super().__init__()
        base = check_instance(build_component("classifier", base, "base"), Classifier, "base")
        self.members = check_positive_int("members", members)
        if init not in FAST_WEIGHT_INITS:
            raise ConfigError(f"init must be one of {', '.join(FAST_WEIGHT_INITS)}; got {init!r}")
        if isinstance(base, BatchEnsemble):
            raise ConfigError("base must be a plain classifier, not another BatchEnsemble")
        if _wrap_layers(base, self.members, init) == 0:
            raise ConfigError(f"{type(base).__name__} has no Conv2d or Linear layer to give fast weights")
        self.base = base
        self.num_classes, self.in_chans, self.image_size = base.num_classes, base.in_chans, base.image_size

    def __len__(self) -> int:
        """``M``, as for an :class:`~genflow.classify.Ensemble`."""
        return self.members

    def _tiled(self, x: Tensor) -> Tensor:
        return self.check_input(x).repeat(self.members, *([1] * (x.ndim - 1)))

    def member_logits(self, x: Tensor) -> Tensor:
        """Every member's logits ``(M, b, num_classes)``."""
        return self.base(self._tiled(x)).reshape(self.members, x.shape[0], -1)

    def forward(self, x: Tensor, per_member: bool = False) -> Tensor:
        """Log of the members' mean predictive distribution ``(b, C)``; ``per_member``: member logits ``(M, b, C)``.

        Raises:
            ShapeError / DTypeError: ``x`` is not a batch of the declared images.
        """
        logits = self.member_logits(x)
        return logits if per_member else combine_logits(logits, "probs")

    def features(self, x: Tensor) -> Tensor:
        """The members' mean early feature map ``(b, channels, height, width)``."""
        maps = self.base.features(self._tiled(x))
        return maps.reshape(self.members, x.shape[0], *maps.shape[1:]).mean(0)
