"""Training objectives: one loss per method."""

from genflow.objectives.adversarial import PGDAdversarialTraining
from genflow.objectives.base import OBJECTIVES, Objective
from genflow.objectives.classification import CrossEntropy
from genflow.objectives.dsm import DenoisingScoreMatching, FlowMatching

__all__ = [
    "OBJECTIVES",
    "Objective",
    "DenoisingScoreMatching",
    "FlowMatching",
    "CrossEntropy",
    "PGDAdversarialTraining",
]
