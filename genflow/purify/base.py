"""The :class:`Purifier` ABC: map an image in ``[0, 1]`` to a purified image in ``[0, 1]``.

A purifier is a randomised pre-processing defence: ``purify(x, generator)``
draws all of its noise from ``generator`` (never the global RNG, which attacks
such as torchattacks' APGD reseed) and is an ``nn.Module`` so that a classifier
wrapped around it (:class:`~genflow.purify.defended.PurifiedClassifier`) exposes
every parameter to an attack.

Its ``gradient_mode`` says what an attack differentiating through it sees:

* ``full``: the exact gradient of the computation that ran (every step is
  back-propagated; data-dependent step sizes and stopping masks are detached,
  as in the full-gradient re-evaluation of Croce et al. 2022);
* ``surrogate``: the same purifier with fewer steps (cheaper for the attacker;
  the defence evaluated afterwards runs its full step count);
* ``bpda``: the purifier runs unchanged but its backward pass is the identity
  (straight-through, Athalye et al. 2018). A weak baseline that overstates
  robustness: report it only labelled as such.

References:
    Yoon, Hwang and Lee 2021, "Adversarial Purification with Score-based Generative Models" (ADP);
    Athalye, Carlini and Wagner 2018, "Obfuscated Gradients Give a False Sense of Security" (BPDA, EOT);
    Croce et al. 2022, "Evaluating the Adversarial Robustness of Adaptive Test-time Defenses".
"""

from __future__ import annotations

import os
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from genflow.config import Configurable
from genflow.errors import DTypeError
from genflow.purify.errors import ChannelError, GradientModeError, PixelRangeError
from genflow.random import require_generator
from genflow.registry import Registry

__all__ = ["Purifier", "PURIFIERS", "PurifyCost", "GRADIENT_MODES", "check_gradient_mode", "check_images"]

GRADIENT_MODES: tuple[str, ...] = ("full", "surrogate", "bpda")


def check_gradient_mode(mode: object) -> str:
    """Return ``mode`` if it is one of :data:`GRADIENT_MODES`.

    Raises:
        GradientModeError: any other value.
    """
    if not isinstance(mode, str) or mode not in GRADIENT_MODES:
        raise GradientModeError(f"gradient_mode must be one of {', '.join(GRADIENT_MODES)}; got {mode!r}")
    return mode


def check_images(x: object, image_shape: Sequence[int] | None, owner: str) -> Tensor:
    """Check a batch of images ``(N, C, H, W)`` with pixels in ``[0, 1]``; return it.

    Args:
        x: The images.
        image_shape: ``(C, H, W)`` the owner expects, or None for any 4-D batch.
        owner: Named in messages.

    Raises:
        DTypeError: not a floating tensor.
        ChannelError: not 4-D, or a channel count / size other than ``image_shape``.
        PixelRangeError: a pixel outside ``[0, 1]`` or NaN.
    """
    if not isinstance(x, Tensor) or not x.is_floating_point():
        got = f"a {x.dtype} tensor" if isinstance(x, Tensor) else type(x).__name__
        raise DTypeError(f"{owner} takes a floating-point image tensor in [0, 1]; got {got}")
    if x.ndim != 4 or x.shape[0] < 1:
        raise ChannelError(f"{owner} takes images of shape (N, C, H, W) with N >= 1; got shape {tuple(x.shape)}")
    if image_shape is not None:
        expected = tuple(int(s) for s in image_shape)
        if x.shape[1] != expected[0]:
            raise ChannelError(
                f"{owner} takes images with {expected[0]} channel(s), shape (N, {', '.join(map(str, expected))}); "
                f"got {x.shape[1]} channel(s), shape {tuple(x.shape)}"
            )
        if tuple(x.shape[1:]) != expected:
            raise ChannelError(
                f"{owner} takes images of shape (N, {', '.join(map(str, expected))}); got {tuple(x.shape)}"
            )
    with torch.no_grad():
        low, high = float(x.min()), float(x.max())
    if not (low >= 0.0 and high <= 1.0):  # also false for NaN
        raise PixelRangeError(
            f"{owner} takes pixels in [0, 1] (the 'classification' value range); got values in [{low:.4g}, {high:.4g}]"
            " (map [-1, 1] images with (x + 1) / 2)"
        )
    return x


@dataclass(frozen=True)
class PurifyCost:
    """What the last :meth:`Purifier.purify` call cost.

    Attributes:
        images: Images purified.
        evaluations: Network evaluations summed over the images (one image through the model once is one).
        seconds: Wall-clock time of the call (not device-synchronised).
    """

    images: int
    evaluations: int
    seconds: float

    @property
    def evaluations_per_image(self) -> float:
        """Network evaluations per image."""
        return self.evaluations / self.images

    @property
    def seconds_per_image(self) -> float:
        """Wall-clock seconds per image."""
        return self.seconds / self.images


class Purifier(Configurable, nn.Module, ABC):
    """``purify(x, generator) -> x'``: images in ``[0, 1]`` to purified images in ``[0, 1]``.

    Subclasses implement :meth:`_purify` (the defence, given whether the attacker's
    ``surrogate`` is asked; it returns the images and the network evaluations spent) and
    report :attr:`image_shape`. The base class checks the input, requires an explicit
    generator, applies :attr:`gradient_mode` and records :attr:`last_cost`.

    Args:
        gradient_mode: ``full``, ``surrogate`` or ``bpda`` (see the module docstring).

    Raises:
        GradientModeError: an unknown ``gradient_mode``.
    """

    def __init__(self, gradient_mode: str = "full") -> None:
        nn.Module.__init__(self)
        self._gradient_mode = check_gradient_mode(gradient_mode)
        self.last_cost: PurifyCost | None = None

    @classmethod
    def from_trained(cls, path: str | os.PathLike[str], *, ema: bool = True, **kwargs: Any) -> Purifier:
        """This purifier on the process and model of a genflow checkpoint or run folder (EMA weights by default).

        ``kwargs`` are the purifier's other arguments. Raises what
        :func:`genflow.pipeline.load_trained` raises for a missing or bad checkpoint.
        """
        from genflow.pipeline import load_trained  # the pipeline imports every registry; only needed here

        process, model = load_trained(path, ema=ema)
        return cls(model=model, process=process, **kwargs)

    @property
    def gradient_mode(self) -> str:
        """``full``, ``surrogate`` or ``bpda``; settable (checked)."""
        return self._gradient_mode

    @gradient_mode.setter
    def gradient_mode(self, mode: str) -> None:
        self._gradient_mode = check_gradient_mode(mode)

    def to_config(self) -> dict[str, Any]:
        config = super().to_config()
        config["gradient_mode"] = self._gradient_mode  # the current mode, also when set after construction
        return config

    @property
    def image_shape(self) -> tuple[int, ...] | None:
        """``(C, H, W)`` this purifier's model takes, or None when any image size works."""
        return None

    def purify(self, x: Tensor, generator: torch.Generator) -> Tensor:
        """Purify ``x`` with noise from ``generator``.

        Args:
            x: Images ``(N, C, H, W)`` with pixels in ``[0, 1]``.
            generator: The defence's own randomness (required; never the global RNG).

        Returns:
            Purified images in ``[0, 1]``, like ``x``. Differentiable in ``x`` according to
            :attr:`gradient_mode` when gradients are enabled.

        Raises:
            DTypeError, ChannelError, PixelRangeError: bad ``x`` (see :func:`check_images`).
            GeneratorRequiredError: no ``generator``.
        """
        owner = type(self).__name__
        x = check_images(x, self.image_shape, owner)
        generator = require_generator(generator, f"{owner}.purify")
        start = time.perf_counter()
        if self._gradient_mode == "bpda":
            with torch.no_grad():
                out, evaluations = self._purify(x.detach(), generator, surrogate=False)
            out = out + (x - x.detach())  # forward: exactly the purified image; backward: the identity
        else:
            out, evaluations = self._purify(x, generator, surrogate=self._gradient_mode == "surrogate")
        self.last_cost = PurifyCost(int(x.shape[0]), int(evaluations), time.perf_counter() - start)
        return out

    def forward(self, x: Tensor, generator: torch.Generator) -> Tensor:
        """Same as :meth:`purify`."""
        return self.purify(x, generator)

    @abstractmethod
    def _purify(self, x: Tensor, generator: torch.Generator, *, surrogate: bool) -> tuple[Tensor, int]:
        """The defence on checked images (``surrogate``: the attacker's cheaper version); returns the purified
        images and the network evaluations spent, summed over images."""


PURIFIERS: Registry[Purifier] = Registry("purifier", Purifier)
"""The purifier family (``score``: ADP, ``diffusion``: diffuse and solve back)."""
