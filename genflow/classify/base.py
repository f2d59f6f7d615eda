"""The :class:`Classifier` ABC: ``forward(x) -> logits`` on images in ``[0, 1]``, an early feature map, FLOPs.

Every classifier declares the images it takes (``in_chans``, ``image_size``) and
the number of classes, checks its input at the boundary, exposes one early
feature map through :meth:`Classifier.features` (what a diffusion bridge network
conditions on) and reports its FLOPs measured with ``torch.utils.flop_counter``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor, nn

from genflow.config import Configurable
from genflow.errors import ConfigError, DTypeError, ShapeError
from genflow.model.flops import flop_counter
from genflow.registry import Registry

__all__ = ["Classifier", "CLASSIFIERS", "check_images", "check_positive_int"]


def check_positive_int(name: str, value: object, lo: int = 1) -> int:
    """Return ``value`` if it is an int ``>= lo`` (not a bool); raise :class:`ConfigError` otherwise."""
    if not isinstance(value, int) or isinstance(value, bool) or value < lo:
        raise ConfigError(f"{name} must be an int >= {lo}; got {value!r}")
    return value


def check_images(x: object, in_chans: int, image_size: int, where: str) -> Tensor:
    """Check a batch of images ``(batch, in_chans, image_size, image_size)``.

    Raises:
        DTypeError: not a floating tensor.
        ShapeError: any other shape.
    """
    if not isinstance(x, Tensor) or not x.is_floating_point():
        given = x.dtype if isinstance(x, Tensor) else type(x).__name__
        raise DTypeError(f"{where} expects a floating image tensor; got {given}")
    expected = (in_chans, image_size, image_size)
    if x.ndim != 4 or tuple(x.shape[1:]) != expected or x.shape[0] == 0:
        raise ShapeError(f"{where} expects images of shape (batch>=1, {', '.join(map(str, expected))}); "
                         f"got shape {tuple(x.shape)}")  # fmt: skip
    return x


class Classifier(Configurable, nn.Module, ABC):
    """An image classifier ``forward(x) -> logits`` for pixels in ``[0, 1]``.

    Subclasses set ``num_classes``, ``in_chans`` and ``image_size`` in ``__init__``
    and implement :meth:`forward` and :meth:`features`.

    Shapes:
        x: ``(batch, in_chans, image_size, image_size)``; logits: ``(batch, num_classes)``.
    """

    num_classes: int
    in_chans: int
    image_size: int

    def __init__(self) -> None:
        nn.Module.__init__(self)

    @abstractmethod
    def forward(self, x: Tensor) -> Tensor:
        """Logits ``(batch, num_classes)`` of images ``x`` in ``[0, 1]``."""

    @abstractmethod
    def features(self, x: Tensor) -> Tensor:
        """The early feature map ``(batch, channels, height, width)`` (the first stage's output)."""

    def logits_and_features(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Logits and the early feature map of one pass (what a bridge network needs); subclasses whose
        forward pass goes through :meth:`features` override this to compute the feature map once."""
        return self(x), self.features(x)

    def check_input(self, x: object) -> Tensor:
        """``x`` checked against the declared image shape (see :func:`check_images`)."""
        return check_images(x, self.in_chans, self.image_size, type(self).__name__)

    def flops(self, batch: int = 1) -> int:
        """FLOPs of one forward pass on ``batch`` images, measured with ``torch.utils.flop_counter``."""
        param = next(self.parameters())
        x = torch.zeros(batch, self.in_chans, self.image_size, self.image_size, dtype=param.dtype, device=param.device)
        was_training = self.training
        self.eval()
        try:
            with flop_counter() as counter, torch.no_grad():
                self(x)
        finally:
            self.train(was_training)
        return int(counter.get_total_flops())


CLASSIFIERS: Registry[Classifier] = Registry("classifier", Classifier)
