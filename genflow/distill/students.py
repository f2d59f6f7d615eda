"""Distilling the digits protocol's ensemble: one call from a teacher run folder to a trained student.

The ``distill_digits`` recipe (``genflow/recipes/distill_digits.yaml``) fixes the data, the
student architecture (the protocol's ResNet-8, alone or as a BatchEnsemble), the objective's
``alpha``, ``temperature`` and default perturbation, and the trainer settings;
:func:`distill_student` trains one student from it in memory (what the example, the demo
section and ``benchmarks/distill.py`` share). ``genflow train distill_digits`` trains the same
student into a run folder.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from genflow.classify.base import Classifier
from genflow.classify.loading import member_dirs
from genflow.classify.training import classification_data, train_members
from genflow.errors import ConfigError
from genflow.objectives.base import OBJECTIVES
from genflow.recipe import load_recipe

__all__ = ["DISTILL_RECIPE", "STUDENTS", "DistilledStudent", "distill_student"]

DISTILL_RECIPE = "distill_digits"
STUDENTS = ("single", "batch_ensemble")


@dataclass
class DistilledStudent:
    """What :func:`distill_student` returns: the student (eval mode), its training wall time and history."""

    model: Classifier
    seconds: float
    history: list[dict[str, float]]


def distill_student(
    teachers: str | os.PathLike[str],
    *,
    student: str = "batch_ensemble",
    perturbation: str | dict[str, Any] | None = None,
    seed: int = 0,
    overrides: Sequence[str] = (),
    progress: bool = False,
) -> DistilledStudent:
    """Distil the ensemble run ``teachers`` into a student trained by the ``distill_digits`` recipe.

    Args:
        teachers: An ensemble run folder (``member-<i>/``).
        student: ``"single"`` (the recipe's base network, matched to the ensemble mean) or ``"batch_ensemble"``
            (one member per teacher, member i matched to teacher i).
        perturbation: A perturbation name or config; None keeps the recipe's.
        seed: Seed of the student's initial weights, data order and draws.
        overrides: Further recipe overrides (``trainer.steps=50``).
        progress: A progress bar.

    Raises:
        ConfigError: an unknown ``student``. ClassifierCheckpointError: ``teachers`` holds no ensemble.
    """
    if student not in STUDENTS:
        raise ConfigError(f"student must be one of {', '.join(STUDENTS)}; got {student!r}")
    extra = [f"model.members={len(member_dirs(teachers))}"] if student == "batch_ensemble" else []
    config = load_recipe(DISTILL_RECIPE, [*extra, *overrides]).config
    objective = {**config["objective"], "teachers": str(teachers)}
    if perturbation is not None:
        objective["perturbation"] = perturbation
    model = config["model"] if student == "batch_ensemble" else config["model"]["base"]
    trainer = {**config["trainer"], "validate_every": 0}
    trained = train_members(model, OBJECTIVES.from_config(objective), classification_data(config["data"]),
                            members=1, seed=seed, trainer=trainer, progress=progress)  # fmt: skip
    return DistilledStudent(trained.ensemble.members[0], trained.seconds[0], trained.histories[0])
