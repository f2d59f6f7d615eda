"""A classifier behind a purifier: the module a robustness evaluation attacks.

``PurifiedClassifier(purifier, classifier, draws=S)`` purifies each input ``S``
times with independent noise from its **own** ``torch.Generator`` (an attack that
reseeds the global RNG cannot fix the defence's noise), classifies every purified
copy and combines the ``S`` predictions. Inputs are images in ``[0, 1]``, the
output is logits, and purifier and classifier are registered submodules, so
torchattacks drives it like any classifier.

References:
    Yoon, Hwang and Lee 2021, "Adversarial Purification with Score-based Generative Models", sec. 3.3
    (defence ensembling: average the softmax over S purifications).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from genflow.errors import ConfigError
from genflow.purify.base import Purifier, check_gradient_mode

__all__ = ["PurifiedClassifier", "COMBINES"]

COMBINES: tuple[str, ...] = ("softmax", "logits", "vote")


class PurifiedClassifier(nn.Module):
    """Purifier + classifier + ``S``-draw ensembling, ``forward(x) -> logits``.

    Args:
        purifier: A :class:`~genflow.purify.base.Purifier`.
        classifier: Any ``nn.Module`` mapping images in ``[0, 1]`` to logits ``(N, K)``.
        draws: ``S``, the purifications per input (each with fresh defence noise).
        combine: ``softmax``: the log of the mean probabilities (its softmax is the mean softmax);
            ``logits``: the mean logits; ``vote``: the log of the fraction of draws voting for each class
            (no gradient: report it, do not attack it).
        seed: Seed of the defence's generator (see :meth:`reseed`).

    Raises:
        ConfigError: a purifier that is not a :class:`Purifier`, a classifier that is not an ``nn.Module``,
            ``draws`` not a positive int, or an unknown ``combine``.

    Shapes:
        x: ``(N, C, H, W)`` in ``[0, 1]``; output: ``(N, K)``.
    """

    def __init__(
        self, purifier: Purifier, classifier: nn.Module, draws: int = 1, combine: str = "softmax", seed: int = 0
    ) -> None:
        super().__init__()
        if not isinstance(purifier, Purifier):
            raise ConfigError(f"purifier must be a Purifier instance; got {type(purifier).__name__}")
        if not isinstance(classifier, nn.Module):
            raise ConfigError(f"classifier must be an nn.Module returning logits; got {type(classifier).__name__}")
        if not isinstance(draws, int) or isinstance(draws, bool) or draws < 1:
            raise ConfigError(f"draws must be a positive int; got {draws!r}")
        if combine not in COMBINES:
            raise ConfigError(f"combine must be one of {', '.join(COMBINES)}; got {combine!r}")
        self.purifier, self.classifier = purifier, classifier
        self.draws, self.combine = draws, combine
        self.generator = torch.Generator()  # CPU: the same draws on every device (genflow.random)
        self.reseed(seed)

    def reseed(self, seed: int) -> None:
        """Restart the defence's noise from ``seed`` (the global RNG is never used or touched)."""
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise ConfigError(f"seed must be an int; got {seed!r}")
        self.seed = seed
        self.generator.manual_seed(seed)

    @contextmanager
    def gradient_mode(self, mode: str) -> Iterator[PurifiedClassifier]:
        """Set the purifier's gradient mode (``full``, ``surrogate``, ``bpda``) inside a ``with`` block."""
        previous = self.purifier.gradient_mode
        self.purifier.gradient_mode = check_gradient_mode(mode)
        try:
            yield self
        finally:
            self.purifier.gradient_mode = previous

    def forward(self, x: Tensor) -> Tensor:
        """Logits of the ``S``-draw defence (one purification of every input per draw)."""
        n, s = x.shape[0], self.draws
        batch = x if s == 1 else x.repeat(s, *([1] * (x.ndim - 1)))  # draw-major: row d * n + i
        logits = self.classifier(self.purifier.purify(batch, self.generator))
        logits = logits.reshape(s, n, *logits.shape[1:])
        if self.combine == "logits":
            return logits.mean(0)
        if self.combine == "softmax":
            return torch.logsumexp(torch.log_softmax(logits, dim=-1), dim=0) - math.log(s)
        votes = nn.functional.one_hot(logits.argmax(-1), logits.shape[-1]).to(logits.dtype).mean(0)
        return votes.clamp_min(torch.finfo(logits.dtype).tiny).log()

    def extra_repr(self) -> str:
        return f"draws={self.draws}, combine={self.combine!r}, seed={self.seed}"
