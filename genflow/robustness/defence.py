"""What an evaluation needs from a defence, for any ``nn.Module`` (``[0, 1]`` images in, logits out).

A defence may offer two hooks (``genflow.purify.PurifiedClassifier`` does): ``reseed(seed)`` restarts
its private noise generator, and ``gradient_mode(mode)`` is a context manager selecting the gradient an
attacker sees (``"full"``, ``"surrogate"`` or ``"bpda"``). A plain classifier has neither: it is
deterministic and its gradient is its own, so both hooks become no-ops and the report says so.

:class:`EOT` averages a stochastic defence over draws, the expectation over transformation of
Athalye et al. 2018 ("Synthesizing Robust Adversarial Examples", sec. 2).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import Tensor, nn

from genflow.robustness.errors import AttackConfigError, ImageRangeError, ImageShapeError

__all__ = ["EOT", "GRADIENT_MODES", "check_images", "check_labels", "supports_gradient_mode", "gradient_mode",
           "reseed", "predict_probs"]  # fmt: skip

GRADIENT_MODES: tuple[str, ...] = ("full", "surrogate", "bpda")


def check_images(x: object, where: str, channels: int | None = None) -> Tensor:
    """Return ``x`` if it is a floating ``(n, C, H, W)`` batch in ``[0, 1]``.

    Raises:
        ImageShapeError: not a 4-D floating tensor, an empty batch, or ``C != channels``.
        ImageRangeError: a value outside ``[0, 1]`` (or not finite).
    """
    if not isinstance(x, Tensor) or not x.is_floating_point() or x.ndim != 4 or x.shape[0] == 0:
        given = f"shape {tuple(x.shape)}, dtype {x.dtype}" if isinstance(x, Tensor) else type(x).__name__
        raise ImageShapeError(f"{where} expects floating images (n>=1, C, H, W); got {given}")
    if channels is not None and x.shape[1] != channels:
        raise ImageShapeError(f"{where} expects {channels} channel(s); got images of shape {tuple(x.shape)}")
    lo, hi = float(x.min()), float(x.max())
    if not (0.0 <= lo and hi <= 1.0):
        raise ImageRangeError(f"{where} expects pixel values in [0, 1] (torchattacks clips to it); "
                              f"got values in [{lo:.4g}, {hi:.4g}]")  # fmt: skip
    return x


def check_labels(labels: object, n: int, where: str) -> Tensor:
    """Return ``labels`` if it is an integer ``(n,)`` tensor of non-negative class indices.

    Raises:
        ImageShapeError: another shape or dtype, or a negative label.
    """
    if not isinstance(labels, Tensor) or labels.dtype not in (torch.int64, torch.int32) or labels.shape != (n,):
        given = f"shape {tuple(labels.shape)}, dtype {labels.dtype}" if isinstance(labels, Tensor) else type(labels)
        raise ImageShapeError(f"{where} expects integer labels of shape ({n},); got {given}")
    if n and int(labels.min()) < 0:
        raise ImageShapeError(f"{where} expects labels >= 0; got {int(labels.min())}")
    return labels.long()


def supports_gradient_mode(defence: nn.Module) -> bool:
    """Whether ``defence`` has a ``gradient_mode(mode)`` context manager (a purifier does, a classifier not)."""
    return callable(getattr(defence, "gradient_mode", None))


@contextlib.contextmanager
def gradient_mode(defence: nn.Module, mode: str | None) -> Iterator[bool]:
    """Run the block with ``defence.gradient_mode(mode)`` when the defence has it; yields whether it applied.

    Raises:
        AttackConfigError: ``mode`` is not one of :data:`GRADIENT_MODES` (or None).
    """
    if mode is not None and mode not in GRADIENT_MODES:
        raise AttackConfigError(f"gradient mode must be one of {GRADIENT_MODES} or None; got {mode!r}")
    if mode is None or not supports_gradient_mode(defence):
        yield False
        return
    with defence.gradient_mode(mode):
        yield True


def reseed(defence: nn.Module, seed: int) -> bool:
    """Restart the defence's own noise generator at ``seed`` when it has ``reseed``; returns whether it did."""
    hook = getattr(defence, "reseed", None)
    if callable(hook):
        hook(int(seed))
        return True
    return False


@torch.no_grad()
def predict_probs(defence: nn.Module, x: Tensor, draws: int = 1, batch_size: int = 256) -> Tensor:
    """Mean softmax of ``draws`` independent forward passes of the defence, ``(n, classes)``."""
    out = []
    for chunk in x.split(batch_size):
        out.append(torch.stack([defence(chunk).float().softmax(-1) for _ in range(draws)]).mean(0))
    return torch.cat(out)


class EOT(nn.Module):
    """Expectation over transformation: the mean logits of ``draws`` independent passes of a stochastic defence.

    ``forward(x) = 1/E sum_e f_e(x)``, so its gradient is the average of the per-draw logit gradients
    (for a loss that is linear in the logits, such as the margin and DLR losses, exactly the average of
    the per-draw loss gradients; for cross-entropy the gradient taken at the averaged logits). Every draw
    uses fresh noise from the defence's own generator. With ``draws=1`` it is the defence itself.

    Args:
        defence: Any ``nn.Module`` mapping ``[0, 1]`` images to logits.
        draws: ``E >= 1``.

    References:
        Athalye, Engstrom, Ilyas, Kwok 2018, "Synthesizing Robust Adversarial Examples", eq. (1);
        Athalye, Carlini, Wagner 2018, "Obfuscated Gradients Give a False Sense of Security", sec. 4.3.
    """

    def __init__(self, defence: nn.Module, draws: int = 1) -> None:
        super().__init__()
        if not isinstance(draws, int) or isinstance(draws, bool) or draws < 1:
            raise AttackConfigError(f"EOT draws must be an int >= 1; got {draws!r}")
        self.defence, self.draws = defence, draws

    def forward(self, x: Tensor) -> Tensor:
        total = self.defence(x)
        for _ in range(self.draws - 1):
            total = total + self.defence(x)
        return total / self.draws
