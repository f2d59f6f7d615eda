"""Ensemble distillation with diversifying input perturbations (ODS, ConfODS) into single or BatchEnsemble
students. See ``docs/distillation.md``."""

from genflow.distill.base import PERTURBATIONS, DistillationError, Perturbation
from genflow.distill.batch_ensemble import FAST_WEIGHT_INITS, BatchEnsemble, Rank1Layer
from genflow.distill.diversity import member_diversity
from genflow.distill.objective import EnsembleDistillation, kd_loss, load_teachers
from genflow.distill.perturbations import (
    NORMS,
    ConfODSPerturbation,
    GaussianPerturbation,
    NoPerturbation,
    ODSPerturbation,
    ods_direction,
)
from genflow.distill.students import DISTILL_RECIPE, STUDENTS, DistilledStudent, distill_student

__all__ = [
    "PERTURBATIONS",
    "Perturbation",
    "DistillationError",
    "NoPerturbation",
    "GaussianPerturbation",
    "ODSPerturbation",
    "ConfODSPerturbation",
    "ods_direction",
    "NORMS",
    "BatchEnsemble",
    "Rank1Layer",
    "FAST_WEIGHT_INITS",
    "EnsembleDistillation",
    "kd_loss",
    "load_teachers",
    "member_diversity",
    "DISTILL_RECIPE",
    "STUDENTS",
    "DistilledStudent",
    "distill_student",
]
