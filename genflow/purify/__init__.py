"""Adversarial purification: a generative model pulls an input back to the data before it is classified."""

from genflow.purify.base import GRADIENT_MODES, PURIFIERS, Purifier, check_gradient_mode, check_images
from genflow.purify.defended import COMBINES, PurifiedClassifier
from genflow.purify.errors import ChannelError, GradientModeError, PixelRangeError

__all__ = [
    "PURIFIERS", "Purifier", "GRADIENT_MODES", "check_gradient_mode", "check_images", "PurifiedClassifier",
    "COMBINES", "PixelRangeError", "ChannelError", "GradientModeError",
]  # fmt: skip
