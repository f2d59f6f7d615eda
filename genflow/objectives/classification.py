"""Cross-entropy training of a classifier, with random-crop augmentation drawn in :meth:`draw`.

``L = 1/n sum_i CE(softmax(f(crop_i(x_i))), (1 - s) onehot(y_i) + s / C)`` with label smoothing ``s``.
The augmentation is the standard one for small images: pad each image by
``pad`` pixels with zeros on every side and take the ``H x W`` window at an offset
``(dy, dx)`` drawn uniformly from ``{0, ..., 2 pad}^2`` (optionally also a
horizontal flip with probability 1/2, off by default: digits are not mirror-symmetric).
The offsets and flips are drawn in :meth:`CrossEntropy.draw` from the Trainer's
per-step generator, so a resumed or data-parallel run sees the same augmented
batches as an uninterrupted single-process run.

References:
    He et al. 2016, "Deep Residual Learning for Image Recognition", sec. 4.2 (pad-4 random crops on CIFAR-10);
    Szegedy et al. 2016, "Rethinking the Inception Architecture", sec. 7 (label smoothing).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from genflow.errors import ConfigError, ShapeError
from genflow.metrics.calibration import check_labels
from genflow.objectives.base import OBJECTIVES, Objective
from genflow.random import require_generator

__all__ = ["CrossEntropy", "crop_offsets", "image_label_batch", "random_crop"]


def crop_offsets(n: int, pad: int, generator: torch.Generator, device: Any) -> Tensor:
    """``(n, 2)`` crop offsets uniform in ``[0, 2 pad]``, drawn from ``generator`` and moved to ``device``."""
    return torch.randint(0, 2 * pad + 1, (n, 2), generator=generator, device=generator.device).to(device)


def image_label_batch(batch: Mapping[str, Tensor], fields: tuple[str, ...], name: str) -> tuple[Tensor, Tensor]:
    """The ``x`` ``(n, C, H, W)`` and ``label`` ``(n,)`` fields of a classification batch.

    Raises:
        ShapeError: a field of ``fields`` missing, or ``x`` / ``label`` of the wrong shape (``name`` in the message).
    """
    missing = [f for f in fields if f not in batch]
    if missing:
        raise ShapeError(f"{name} needs batch fields {fields}; missing {missing} in {tuple(batch)}")
    x, labels = batch["x"], batch["label"]
    if x.ndim != 4 or labels.shape != x.shape[:1]:
        raise ShapeError(f"{name} expects x (n, C, H, W) and label (n,); got {tuple(x.shape)} and "
                         f"{tuple(labels.shape)}")  # fmt: skip
    return x, labels


def random_crop(x: Tensor, offsets: Tensor, pad: int, flips: Tensor | None = None) -> Tensor:
    """Zero-pad ``x`` by ``pad`` and take each image's window at ``offsets`` (then flip where ``flips``).

    Args:
        x: Images ``(n, C, H, W)``.
        offsets: ``(n, 2)`` integer ``(dy, dx)`` in ``[0, 2 pad]``; ``(pad, pad)`` returns the image itself.
        pad: Padding on every side.
        flips: Optional ``(n,)`` bool, mirror the image left-right where true.

    Returns:
        Augmented images, shaped like ``x``.
    """
    if pad == 0 and flips is None:
        return x
    n, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    rows = offsets[:, :1] + torch.arange(h, device=x.device)  # (n, H)
    cols = offsets[:, 1:] + torch.arange(w, device=x.device)  # (n, W)
    if flips is not None:
        cols = torch.where(flips[:, None], cols.flip(1), cols)
    batch = torch.arange(n, device=x.device)[:, None, None]
    return padded[batch, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)  # (n, H, W, C) -> (n, C, H, W)


@OBJECTIVES.register("cross_entropy")
class CrossEntropy(Objective):
    """Cross-entropy of a classifier's logits against integer labels, on randomly cropped images.

    Batches carry ``x`` (images ``(n, C, H, W)`` in ``[0, 1]``) and ``label`` (int64 ``(n,)``).
    :meth:`metrics` gives per-example ``accuracy`` and ``nll`` on the unaugmented images (the
    Trainer logs their validation means as ``val_accuracy`` and ``val_nll``).

    Args:
        label_smoothing: ``s`` in ``[0, 1)``: the target puts ``1 - s`` on the label and ``s / C`` on every class.
        pad: Random-crop padding in pixels (0: no crop).
        flip: Also mirror images left-right with probability 1/2.

    Raises:
        ConfigError: ``label_smoothing`` outside ``[0, 1)`` or a negative ``pad``.
    """

    fields: ClassVar[tuple[str, ...]] = ("x", "label")

    def __init__(self, label_smoothing: float = 0.0, pad: int = 1, flip: bool = False) -> None:
        if not 0.0 <= float(label_smoothing) < 1.0:
            raise ConfigError(f"label_smoothing must be in [0, 1); got {label_smoothing}")
        if not isinstance(pad, int) or isinstance(pad, bool) or pad < 0:
            raise ConfigError(f"pad must be an int >= 0; got {pad!r}")
        self.label_smoothing, self.pad, self.flip = float(label_smoothing), pad, bool(flip)

    def draw(
        self, n: int, shapes: Mapping[str, tuple[int, ...]], generator: torch.Generator, *, dtype: torch.dtype,
        device: Any,
    ) -> dict[str, Tensor]:  # fmt: skip
        """Crop offsets ``(n, 2)`` in ``[0, 2 pad]`` (and flips ``(n,)`` when ``flip``) from ``generator``."""
        generator = require_generator(generator, f"{type(self).__name__}.draw")
        draws = {"offsets": crop_offsets(n, self.pad, generator, device)}
        if self.flip:
            draws["flips"] = (torch.rand(n, generator=generator, device=generator.device) < 0.5).to(device)
        return draws

    def _batch(self, batch: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
        return image_label_batch(batch, self.fields, "cross_entropy")

    @staticmethod
    def _logits(model: torch.nn.Module, x: Tensor, labels: Tensor) -> Tensor:
        logits = model(x)
        check_labels(labels, logits.shape[0], logits.shape[-1])  # one host sync: a typed error, not an IndexError
        return logits

    def loss(self, model: torch.nn.Module, batch: Mapping[str, Tensor], draws: Mapping[str, Tensor]) -> Tensor:
        """Mean cross-entropy on the batch's images cropped at ``draws["offsets"]``.

        Raises:
            ShapeError: a missing field or mismatched shapes.
            LabelError: a label outside ``[0, num_classes)``.
        """
        x, labels = self._batch(batch)
        x = random_crop(x, draws["offsets"], self.pad, draws.get("flips"))
        return F.cross_entropy(self._logits(model, x, labels), labels, label_smoothing=self.label_smoothing)

    def metrics(self, model: torch.nn.Module, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Per-example ``accuracy`` (0 or 1) and ``nll`` (no smoothing, no augmentation), each ``(n,)``."""
        x, labels = self._batch(batch)
        logits = self._logits(model, x, labels)
        return {
            "accuracy": (logits.argmax(1) == labels).to(logits.dtype),
            "nll": F.cross_entropy(logits, labels, reduction="none"),
        }
