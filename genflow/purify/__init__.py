"""Adversarial purification: a generative model pulls an input back to the data before it is classified."""

from genflow.purify.adp import ScorePurifier
from genflow.purify.base import GRADIENT_MODES, PURIFIERS, Purifier, PurifyCost, check_gradient_mode, check_images
from genflow.purify.defended import COMBINES, PurifiedClassifier
from genflow.purify.diffusion import DiffusionPurifier
from genflow.purify.errors import ChannelError, GradientModeError, PixelRangeError
from genflow.purify.generative import ModelPurifier

__all__ = [
    "PURIFIERS", "Purifier", "PurifyCost", "ModelPurifier", "ScorePurifier", "DiffusionPurifier", "GRADIENT_MODES",
    "check_gradient_mode", "check_images", "PurifiedClassifier", "COMBINES", "PixelRangeError", "ChannelError",
    "GradientModeError",
]  # fmt: skip
