"""Score models: networks predicting eps, x0, v, score or velocity."""

from genflow.model.base import MODELS, ScoreModel

__all__ = ["MODELS", "ScoreModel"]
