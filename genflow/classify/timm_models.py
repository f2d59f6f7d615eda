"""Any timm architecture as a genflow :class:`~genflow.classify.base.Classifier`.

``TimmClassifier("resnet18", in_chans=1, num_classes=10, image_size=32)`` builds
``timm.create_model(arch, in_chans=..., num_classes=..., pretrained=False)`` (never
downloads) and takes its early feature map from timm's ``forward_intermediates``.

References:
    Wightman, "PyTorch Image Models" (timm), ``create_model`` and ``forward_intermediates``.
"""

from __future__ import annotations

from typing import Any

import timm
from torch import Tensor

from genflow.classify.base import CLASSIFIERS, Classifier, check_positive_int
from genflow.errors import ConfigError, UnknownComponentError

__all__ = ["TimmClassifier"]


@CLASSIFIERS.register("timm")
class TimmClassifier(Classifier):
    """A timm model by name, trained from scratch (``pretrained=False``).

    Args:
        arch: A timm architecture name (``timm.list_models()``), e.g. ``"resnet18"``.
        num_classes: Number of classes.
        in_chans: Image channels.
        image_size: Side of the square input images.
        feature_index: Which of the model's ``feature_info`` stages :meth:`features` returns
            (1: the first stage after the stem, for a ResNet ``layer1``).
        model_args: Further keyword arguments for ``timm.create_model`` (e.g. ``{"drop_rate": 0.1}``).

    Raises:
        UnknownComponentError: ``arch`` is not a timm architecture.
        ConfigError: a bad size, an architecture without ``forward_intermediates``, or ``feature_index``
            outside its ``feature_info``.
    """

    def __init__(
        self,
        arch: str = "resnet18",
        num_classes: int = 10,
        in_chans: int = 1,
        image_size: int = 32,
        feature_index: int = 1,
        model_args: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        for name, value, lo in (("num_classes", num_classes, 2), ("in_chans", in_chans, 1),
                                ("image_size", image_size, 1), ("feature_index", feature_index, 0)):  # fmt: skip
            check_positive_int(name, value, lo)
        if not isinstance(arch, str) or not timm.is_model(arch):
            raise UnknownComponentError(f"unknown timm architecture {arch!r}; see timm.list_models()")
        self.num_classes, self.in_chans, self.image_size = num_classes, in_chans, image_size
        self.arch, self.feature_index = arch, feature_index
        self.model = timm.create_model(
            arch, pretrained=False, in_chans=in_chans, num_classes=num_classes, **dict(model_args or {})
        )
        if not hasattr(self.model, "forward_intermediates"):
            raise ConfigError(f"timm architecture {arch!r} has no forward_intermediates; its features are unavailable")
        stages = len(getattr(self.model, "feature_info", []))
        if stages and feature_index >= stages:
            raise ConfigError(f"feature_index must be < {stages} for {arch!r} (its feature_info); got {feature_index}")

    def features(self, x: Tensor) -> Tensor:
        """The ``feature_index``-th intermediate feature map (``NCHW``), computed only up to that stage."""
        x = self.check_input(x)
        return self.model.forward_intermediates(
            x, indices=[self.feature_index], intermediates_only=True, stop_early=True
        )[0]

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``(batch, num_classes)``.

        Raises:
            ShapeError: ``x`` is not ``(batch, in_chans, image_size, image_size)``.
            DTypeError: ``x`` is not floating.
        """
        return self.model(self.check_input(x))
