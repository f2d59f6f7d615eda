"""A purifier built on a trained score model and its process (the shared part of ADP and diffusion purification)."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from genflow.config import build_component
from genflow.data.base import VALUE_RANGES, check_value_range
from genflow.errors import ConfigError
from genflow.model.base import ScoreModel
from genflow.process.gaussian import GaussianProcess
from genflow.purify.base import Purifier
from genflow.validation import check_instance

__all__ = ["ModelPurifier"]


class ModelPurifier(Purifier):
    """A :class:`Purifier` holding a score ``model`` (a registered submodule) on a Gaussian ``process``.

    Images arrive in ``[0, 1]``; the model works in its training ``value_range``
    (``classification``: ``[0, 1]``, ``generation``: ``[-1, 1]``), so :meth:`to_model`
    and :meth:`from_model` map between the two. The model is put in eval mode and its
    parameters are frozen (an attack differentiates through it, never trains it).

    Args:
        model: The trained :class:`~genflow.model.base.ScoreModel` (a config dict rebuilds an untrained one).
        process: Its process; default the model's own ``process`` attribute (``ncsn``, ``energy_conv``).
        value_range: The pixel range the model was trained on.
        gradient_mode: See :class:`Purifier`.

    Raises:
        ConfigError: no process given and the model has none, or a bad component or value range.
    """

    config_components = {"model": "model", "process": "process"}

    def __init__(
        self,
        model: ScoreModel | dict,
        process: GaussianProcess | dict | str | None = None,
        value_range: str = "classification",
        gradient_mode: str = "full",
    ) -> None:
        super().__init__(gradient_mode)
        model = check_instance(build_component("model", model, "model"), ScoreModel, "model")
        process = getattr(model, "process", None) if process is None else build_component("process", process, "process")
        if process is None:
            raise ConfigError(f"{type(model).__name__} has no process attribute: pass process= (the one it trained on)")
        self.process = check_instance(process, GaussianProcess, "process")
        self.model = model.eval().requires_grad_(False)
        self.value_range = check_value_range(value_range)
        low, high = VALUE_RANGES[self.value_range]
        self._scale, self._shift = high - low, low  # model value = scale * pixel + shift

    @property
    def image_shape(self) -> tuple[int, ...] | None:
        """The model's ``event_shape`` when it declares one."""
        shape = getattr(self.model, "event_shape", None)
        return None if shape is None else tuple(int(s) for s in shape)

    @property
    def pixel_scale(self) -> float:
        """Model units per pixel unit (2 for ``generation``, 1 for ``classification``)."""
        return self._scale

    def to_model(self, x: Tensor) -> Tensor:
        """Pixels in ``[0, 1]`` to the model's value range."""
        return x * self._scale + self._shift if self._scale != 1.0 or self._shift != 0.0 else x

    def from_model(self, y: Tensor) -> Tensor:
        """The model's value range back to pixels (not clipped)."""
        return (y - self._shift) / self._scale if self._scale != 1.0 or self._shift != 0.0 else y

    def train(self, mode: bool = True) -> ModelPurifier:
        super().train(mode)
        self.model.eval()  # a purifier's model never trains (no dropout, no label dropout)
        return self

    def to_config(self) -> dict[str, Any]:
        config = super().to_config()
        config["process"] = self.process.to_config()  # also when it was taken from the model
        return config
