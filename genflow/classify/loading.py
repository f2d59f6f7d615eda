"""Loading trained classifiers and ensembles from run folders (safetensors + JSON, nothing unpickled).

A single classifier run is a folder of ``step-XXXXXXXX/`` checkpoints written by
the :class:`~genflow.train.Trainer`; an ensemble run holds one such folder per
member, ``member-0/``, ``member-1/``, ... (see :func:`member_dir`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from genflow.classify.base import CLASSIFIERS, Classifier
from genflow.classify.ensemble import Ensemble
from genflow.train.checkpoint import CheckpointError, load_checkpoint

__all__ = ["ClassifierCheckpointError", "load_classifier", "load_ensemble", "load_run", "member_dir", "member_dirs"]

_MEMBER = re.compile(r"member-(\d+)")


class ClassifierCheckpointError(CheckpointError):
    """A checkpoint is not a classifier's (e.g. a generator's), or has another class count than expected."""


def member_dir(run: str | os.PathLike[str], index: int) -> Path:
    """The folder of member ``index`` inside an ensemble run: ``run/member-<index>``."""
    return Path(run) / f"member-{index}"


def member_dirs(run: str | os.PathLike[str]) -> list[Path]:
    """The ``member-<i>`` folders of an ensemble run, in order of ``i`` (empty if there are none)."""
    root = Path(run)
    found = [(int(m.group(1)), p) for p in root.glob("member-*") if p.is_dir() and (m := _MEMBER.fullmatch(p.name))]
    return [p for _, p in sorted(found)]


def load_classifier(path: str | os.PathLike[str], *, num_classes: int | None = None, ema: bool = True) -> Classifier:
    """The classifier of a checkpoint folder or run folder (its latest checkpoint), in eval mode.

    Args:
        path: A ``step-XXXXXXXX`` folder or a run folder.
        num_classes: If given, the class count the caller expects.
        ema: Use the EMA weights when the checkpoint has them.

    Returns:
        The classifier rebuilt from the checkpoint's ``model_config`` through ``CLASSIFIERS``.

    Raises:
        CheckpointError: no readable checkpoint at ``path``.
        ClassifierCheckpointError: the checkpoint holds a generator (score model) or an unknown model,
            or a classifier with another class count than ``num_classes``.
    """
    ckpt = load_checkpoint(path)
    config = ckpt.state.get("model_config")
    name = config.get("name") if isinstance(config, dict) else None
    if name not in CLASSIFIERS:
        process = ckpt.state.get("process_config")
        if process is not None:
            raise ClassifierCheckpointError(
                f"{path} is a generator checkpoint (model {name!r} on process {process.get('name')!r}), not a "
                "classifier; load it with genflow.pipeline.load_trained"
            )
        raise ClassifierCheckpointError(
            f"{path} does not hold a classifier: expected a model_config naming one of "
            f"{', '.join(CLASSIFIERS.names())}; got {name!r}"
        )
    model = CLASSIFIERS.from_config(config)
    if num_classes is not None and model.num_classes != num_classes:
        raise ClassifierCheckpointError(
            f"{path} holds a classifier with {model.num_classes} classes; expected {num_classes}"
        )
    model.load_state_dict(ckpt.ema if ema and ckpt.ema else ckpt.model)
    return model.eval()


def load_ensemble(
    path: str | os.PathLike[str], *, num_classes: int | None = None, combine: str = "probs", ema: bool = True
) -> Ensemble:
    """The ensemble of an ensemble run folder: one member per ``member-<i>/`` subfolder, in order.

    Raises:
        ClassifierCheckpointError: no ``member-<i>`` folders, or a member that is not a classifier
            (or has another class count than ``num_classes``).
        ComponentError: members that disagree on classes or input shape.
    """
    folders = member_dirs(path)
    if not folders:
        raise ClassifierCheckpointError(
            f"{path} is not an ensemble run: expected member-0/, member-1/, ... folders "
            "(a single classifier run loads with load_classifier)"
        )
    members = [load_classifier(folder, num_classes=num_classes, ema=ema) for folder in folders]
    return Ensemble(members, combine=combine).eval()


def load_run(path: str | os.PathLike[str], *, num_classes: int | None = None) -> Classifier | Ensemble:
    """An ensemble run (``member-<i>/`` folders) as an :class:`Ensemble`, any other run as one classifier.

    Raises:
        CheckpointError / ClassifierCheckpointError: as :func:`load_classifier` and :func:`load_ensemble`.
    """
    if member_dirs(path):
        return load_ensemble(path, num_classes=num_classes)
    return load_classifier(path, num_classes=num_classes)

