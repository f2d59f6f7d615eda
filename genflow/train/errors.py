"""Typed errors of training: a run that cannot start, continue or be saved says why and what is left."""

from __future__ import annotations

from pathlib import Path

from genflow.errors import GenflowError, NonFiniteError

__all__ = ["UnknownTrainerArgumentError", "NonFiniteLossError", "RunLockedError", "TrainingInterrupted"]


class UnknownTrainerArgumentError(GenflowError, TypeError):
    """``Trainer`` was given a keyword it does not accept; the message lists the accepted ones."""


class NonFiniteLossError(NonFiniteError):
    """The loss or the gradient norm of a step is NaN or infinite; training stopped before saving anything.

    Attributes:
        step: The optimiser step (1-based, as in ``metrics.jsonl``) whose loss or gradient was not finite.
        indices: Dataset indices of that step's batch on this process (None where unknown).
        last_checkpoint: The newest complete checkpoint on disk (None if there is none).
    """

    def __init__(
        self, message: str, *, step: int, indices: list[int] | None = None, last_checkpoint: Path | None = None
    ) -> None:
        super().__init__(message)
        self.step, self.indices, self.last_checkpoint = step, indices, last_checkpoint


class RunLockedError(GenflowError, RuntimeError):
    """Another live training holds the run folder's lock; the message names its pid and host."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C (``KeyboardInterrupt``) stopped ``Trainer.fit``; nothing partial was saved.

    Still a ``KeyboardInterrupt``, so code that does not catch it exits as on Ctrl-C (the CLI exits 130).

    Attributes:
        step: Steps completed when training stopped.
        last_checkpoint: The newest complete checkpoint on disk (None if there is none).
    """

    def __init__(self, message: str, *, step: int, last_checkpoint: Path | None) -> None:
        super().__init__(message)
        self.step, self.last_checkpoint = step, last_checkpoint
