"""PGD adversarial training (PGD-AT): cross-entropy on worst-case perturbed images.

``min_theta E[ max_{||delta|| <= eps, x + delta in [0, 1]} CE(f_theta(x + delta), y) ]``, the inner
maximisation approximated by ``steps`` steps of projected gradient ascent from a random start in the
ball (Linf: signed-gradient steps; L2: normalised-gradient steps). The random start (and the random-crop
augmentation of :class:`~genflow.objectives.classification.CrossEntropy`) are drawn in
:meth:`PGDAdversarialTraining.draw` from the Trainer's per-step generator, so resumed and data-parallel
runs see the same perturbations. The inner attack runs the model in eval mode (batch-norm statistics
are not updated by attack iterates) on the unwrapped module (no gradient synchronisation: it
differentiates with respect to the images only).

References:
    Madry, Makelov, Schmidt, Tsipras, Vladu 2018, "Towards Deep Learning Models Resistant to Adversarial
    Attacks", eq. (2.1) and sec. 4 (PGD with random start).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genflow.errors import ConfigError
from genflow.objectives.base import OBJECTIVES, Objective
from genflow.objectives.classification import CrossEntropy, random_crop
from genflow.random import require_generator

__all__ = ["PGDAdversarialTraining", "project", "pgd_perturb", "ADVERSARIAL_NORMS"]

ADVERSARIAL_NORMS: tuple[str, ...] = ("Linf", "L2")


def _expand(v: Tensor, like: Tensor) -> Tensor:
    return v.view(-1, *([1] * (like.ndim - 1)))


def project(adv: Tensor, x: Tensor, eps: float, norm: str) -> Tensor:
    """``adv`` projected onto the ``norm`` ball of radius ``eps`` around ``x``, then clipped to ``[0, 1]``.

    For ``x`` in ``[0, 1]`` the clip keeps the result inside the ball (the box and the ball are convex and
    both hold ``x``; shrinking an L2 step towards ``x`` stays in the box).
    """
    delta = adv - x
    if norm == "Linf":
        delta = delta.clamp(-eps, eps)
    else:
        size = delta.flatten(1).norm(dim=1).clamp_min(1e-12)
        delta = delta * _expand((eps / size).clamp(max=1.0), x)
    return (x + delta).clamp(0.0, 1.0)


def pgd_perturb(
    model: nn.Module, x: Tensor, labels: Tensor, start: Tensor, *, eps: float, step_size: float, steps: int, norm: str
) -> Tensor:
    """PGD on the cross-entropy from ``x + eps * start`` (``start`` in the unit ball); returns detached images."""
    adv = project(x + eps * start, x, eps, norm).detach()
    for _ in range(steps):
        adv.requires_grad_(True)
        with torch.enable_grad():
            (grad,) = torch.autograd.grad(F.cross_entropy(model(adv), labels), adv)
        if norm == "Linf":
            step = grad.sign()
        else:
            step = grad / _expand(grad.flatten(1).norm(dim=1).clamp_min(1e-12), grad)
        adv = project(adv.detach() + step_size * step, x, eps, norm).detach()
    return adv


@OBJECTIVES.register("pgd_at")
class PGDAdversarialTraining(Objective):
    """Cross-entropy on PGD adversarial examples (optionally mixed with the clean loss).

    Batches carry ``x`` (images in ``[0, 1]``) and ``label``. :meth:`metrics` gives per-example clean
    ``accuracy`` and ``nll`` and ``robust_accuracy`` under the same PGD from a zero start (deterministic).

    Args:
        epsilon: Budget (``8/255`` is common on CIFAR-10; ``0.3`` on MNIST).
        step_size: PGD step (Madry et al.: about ``2.5 epsilon / steps``).
        steps: PGD steps of the inner maximisation.
        norm: ``"Linf"`` or ``"L2"``.
        clean_weight: ``w`` in ``(1 - w) CE(adv) + w CE(clean)`` (0: Madry's objective).
        pad: Random-crop padding in pixels, as in ``cross_entropy`` (0: none).
        flip: Also mirror images left-right with probability 1/2.

    Raises:
        ConfigError: a budget or step <= 0, steps < 1, an unknown norm, or ``clean_weight`` outside ``[0, 1]``.
    """

    fields: ClassVar[tuple[str, ...]] = ("x", "label")

    def __init__(
        self,
        epsilon: float = 8 / 255,
        step_size: float = 2 / 255,
        steps: int = 7,
        norm: str = "Linf",
        clean_weight: float = 0.0,
        pad: int = 1,
        flip: bool = False,
    ) -> None:
        if not float(epsilon) > 0 or not float(step_size) > 0:
            raise ConfigError(f"epsilon and step_size must be > 0; got {epsilon!r} and {step_size!r}")
        if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
            raise ConfigError(f"steps must be an int >= 1; got {steps!r}")
        if norm not in ADVERSARIAL_NORMS:
            raise ConfigError(f"norm must be one of {ADVERSARIAL_NORMS}; got {norm!r}")
        if not 0.0 <= float(clean_weight) <= 1.0:
            raise ConfigError(f"clean_weight must be in [0, 1]; got {clean_weight!r}")
        self.epsilon, self.step_size, self.steps, self.norm = float(epsilon), float(step_size), steps, norm
        self.clean_weight = float(clean_weight)
        self._ce = CrossEntropy(label_smoothing=0.0, pad=pad, flip=flip)

    def draw(
        self,
        n: int,
        shapes: Mapping[str, tuple[int, ...]],
        generator: torch.Generator,
        *,
        dtype: torch.dtype,
        device: Any,
    ) -> dict[str, Tensor]:
        """Crop offsets (and flips) as ``cross_entropy`` draws them, and ``start`` ``(n, *x)`` in the unit ball."""
        generator = require_generator(generator, f"{type(self).__name__}.draw")
        draws = self._ce.draw(n, shapes, generator, dtype=dtype, device=device)
        shape = (n, *shapes["x"])
        if self.norm == "Linf":
            start = 2 * torch.rand(shape, generator=generator, device=generator.device, dtype=dtype) - 1
        else:  # uniform direction, radius uniform in [0, 1]
            start = torch.randn(shape, generator=generator, device=generator.device, dtype=dtype)
            radius = torch.rand(n, generator=generator, device=generator.device, dtype=dtype)
            start = start * _expand(radius / start.flatten(1).norm(dim=1).clamp_min(1e-12), start)
        return draws | {"start": start.to(device)}

    def _attack(self, model: nn.Module, x: Tensor, labels: Tensor, start: Tensor) -> Tensor:
        inner = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
        training = inner.training
        inner.eval()
        try:
            return pgd_perturb(inner, x, labels, start, eps=self.epsilon, step_size=self.step_size,
                               steps=self.steps, norm=self.norm)  # fmt: skip
        finally:
            inner.train(training)

    def loss(self, model: nn.Module, batch: Mapping[str, Tensor], draws: Mapping[str, Tensor]) -> Tensor:
        """Mean cross-entropy on PGD examples of the cropped batch (mixed with the clean loss by ``clean_weight``).

        Raises:
            ShapeError: a missing field or mismatched shapes.
            LabelError: a label outside ``[0, num_classes)``.
        """
        x, labels = self._ce._batch(batch)
        x = random_crop(x, draws["offsets"], self._ce.pad, draws.get("flips"))
        adv = self._attack(model, x, labels, draws["start"])
        loss = F.cross_entropy(self._ce._logits(model, adv, labels), labels)
        if self.clean_weight > 0:
            loss = (1 - self.clean_weight) * loss + self.clean_weight * F.cross_entropy(model(x), labels)
        return loss

    def metrics(self, model: nn.Module, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Per-example clean ``accuracy`` and ``nll``, and ``robust_accuracy`` under PGD from a zero start."""
        out = self._ce.metrics(model, batch)
        x, labels = self._ce._batch(batch)
        adv = self._attack(model, x, labels, torch.zeros_like(x))
        with torch.no_grad():
            out["robust_accuracy"] = (model(adv).argmax(1) == labels).to(out["accuracy"].dtype)
        return out
