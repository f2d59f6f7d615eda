"""Denoising score matching for any Gaussian process and any parameterisation.

``L = E_{t, x0, eps} w(t) || model(x_t, t) - target ||^2`` with
``x_t = alpha(t) x0 + sigma(t) eps`` and ``target`` the model's parameterisation
of ``(x0, eps)`` (eps, x0, v, score or velocity). With the velocity
parameterisation on :class:`~genflow.process.interpolant.LinearInterpolant`
this is flow matching (target ``eps - x0``).

References:
    Vincent 2011, "A Connection Between Score Matching and Denoising Autoencoders";
    Ho et al. 2020, eq. (14); Song et al. 2021, eq. (7);
    Hang et al. 2023, "Efficient Diffusion Training via Min-SNR Weighting", eq. (6);
    Song & Ermon 2019, "Generative Modeling by Estimating Gradients of the Data Distribution",
    eq. (6) (``lambda(sigma) = sigma^2`` on the score-space error).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from genflow.config import build_component
from genflow.errors import ConfigError
from genflow.objectives.base import OBJECTIVES, Objective
from genflow.process.gaussian import GaussianProcess, check_parameterization
from genflow.process.interpolant import LinearInterpolant
from genflow.random import require_generator, standard_normal
from genflow.validation import check_instance, check_time_range, times_validated

__all__ = ["DenoisingScoreMatching", "FlowMatching"]

WEIGHTINGS = ("none", "min_snr", "sigma2")


@OBJECTIVES.register("dsm")
class DenoisingScoreMatching(Objective):
    """Denoising score matching in the model's own parameterisation.

    Args:
        process: The Gaussian process (or its config dict / registered name).
        weighting: ``none`` (plain MSE in the model's parameterisation) or
            ``min_snr`` (Min-SNR-gamma: the loss expressed in eps-space is weighted
            by ``min(SNR, gamma) / SNR``) or ``sigma2`` (the loss expressed in score space weighted
            by ``sigma(t)^2``, Song & Ermon 2019: every noise level contributes O(1); the weighting a
            score-parameterised VE model needs, whose plain score error grows like ``1 / sigma^2``;
            for an eps model it equals ``none``).
        min_snr_gamma: ``gamma`` of ``min_snr``.
        t_min / t_max: Training times are uniform on ``[t_min, t_max]``; default the process's.
        cond_field: The batch field passed to the model as ``cond`` (class-conditional training,
            e.g. ``"label"``); None trains unconditionally (``model(x_t, t)``).

    Raises:
        ConfigError: unknown weighting, an empty time range or a ``cond_field`` that is not a field name.
    """

    config_components = {"process": "process"}  # from_config rebuilds it; pipelines pass the recipe's process

    def __init__(
        self,
        process: GaussianProcess | dict | str = "vp",
        weighting: str = "none",
        min_snr_gamma: float = 5.0,
        t_min: float | None = None,
        t_max: float | None = None,
        cond_field: str | None = None,
    ) -> None:
        if cond_field is not None and (not isinstance(cond_field, str) or not cond_field or cond_field == "x"):
            raise ConfigError(f"cond_field must be None or a batch field name other than 'x'; got {cond_field!r}")
        self.cond_field = cond_field
        self.fields = ("x",) if cond_field is None else ("x", cond_field)
        self.process = check_instance(build_component("process", process, "process"), GaussianProcess, "process")
        if weighting not in WEIGHTINGS:
            raise ConfigError(f"weighting must be one of {', '.join(WEIGHTINGS)}; got {weighting!r}")
        self.weighting, self.min_snr_gamma = weighting, float(min_snr_gamma)
        self.t_min = self.process.t_min if t_min is None else float(t_min)
        self.t_max = self.process.t_max if t_max is None else float(t_max)
        if not 0.0 <= self.t_min < self.t_max <= 1.0:
            raise ConfigError(f"need 0 <= t_min < t_max <= 1; got t_min={self.t_min}, t_max={self.t_max}")

    def draw(
        self,
        n: int,
        shapes: Mapping[str, tuple[int, ...]],
        generator: torch.Generator,
        *,
        dtype: torch.dtype,
        device: Any,
    ) -> dict[str, Tensor]:
        """``t`` uniform on ``[t_min, t_max]`` (shape ``(n,)``) and ``noise`` like the ``x`` field."""
        generator = require_generator(generator, f"{type(self).__name__}.draw")
        u = torch.rand(n, generator=generator, dtype=dtype, device=generator.device).to(device)
        return {
            "t": self.t_min + (self.t_max - self.t_min) * u,
            "noise": standard_normal((n, *shapes["x"]), generator, dtype=dtype, device=device, where="dsm.draw"),
        }

    def loss(self, model: torch.nn.Module, batch: Mapping[str, Tensor], draws: Mapping[str, Tensor]) -> Tensor:
        """Mean (weighted) squared error of ``model`` on the noised ``batch["x"]``."""
        kind = check_parameterization(getattr(model, "parameterization", ""))
        x, t, eps = batch["x"], draws["t"], draws["noise"]
        check_time_range(t)  # once per step: the process calls below skip their own per-call check (a sync each)
        with times_validated():
            xt = self.process.sample(x, t, eps)
            target = self.process.from_x0_eps(x, eps, kind, xt, t)
            pred = model(xt, t, cond=batch[self.cond_field]) if self.cond_field is not None else model(xt, t)
            per_example = (pred - target).pow(2).flatten(1).mean(1)
            if self.weighting == "min_snr":
                per_example = per_example * self._min_snr_weight(kind, xt, t)
            elif self.weighting == "sigma2":
                per_example = per_example * self._sigma2_weight(kind, xt, t)
        return per_example.mean()

    def _min_snr_weight(self, kind: str, xt: Tensor, t: Tensor) -> Tensor:
        # an error e in `kind` maps to an eps-space error of size |d eps / d kind| e; weight it by min(SNR, g)/SNR
        t = t.clamp(1e-5, 1.0 - 1e-5)  # the weight's limits at sigma = 0 or alpha = 0, without inf * 0
        ones = torch.ones_like(xt)
        scale = self.process.convert(ones, kind, "eps", torch.zeros_like(xt), t).flatten(1)[:, 0].abs()
        snr = torch.exp(2.0 * self.process.log_snr(t))
        return scale**2 * torch.clamp(snr, max=self.min_snr_gamma) / snr

    def _sigma2_weight(self, kind: str, xt: Tensor, t: Tensor) -> Tensor:
        # an error e in `kind` is a score-space error of size |d score / d kind| e; weight it by sigma^2
        t = t.clamp(1e-5, 1.0 - 1e-5)  # the weight's limits at sigma = 0 or alpha = 0, without inf * 0
        ones = torch.ones_like(xt)
        scale = self.process.convert(ones, kind, "score", torch.zeros_like(xt), t).flatten(1)[:, 0].abs()
        return (scale * self.process.sigma(t)) ** 2

    def to_config(self) -> dict[str, Any]:
        config = super().to_config()
        config["process"] = self.process.to_config()
        return config


@OBJECTIVES.register("flow_matching")
class FlowMatching(Objective):
    """Flow matching on the straight path ``x_t = (1 - t) x0 + t z`` (rectified flow, Liu et al. 2023, eq. 1).

    The model predicts the velocity ``z - x0``; equal to :class:`DenoisingScoreMatching`
    on :class:`LinearInterpolant` with a velocity model, which it delegates to.

    Args:
        cond_field: The batch field passed to the model as ``cond`` (e.g. ``"label"``); None: unconditional.
    """

    def __init__(self, cond_field: str | None = None) -> None:
        self._dsm = DenoisingScoreMatching(LinearInterpolant(), t_min=0.0, t_max=1.0, cond_field=cond_field)
        self.process, self.fields = self._dsm.process, self._dsm.fields

    def draw(
        self,
        n: int,
        shapes: Mapping[str, tuple[int, ...]],
        generator: torch.Generator,
        *,
        dtype: torch.dtype,
        device: Any,
    ) -> dict[str, Tensor]:
        """``t`` uniform on ``[0, 1]`` and ``noise`` (the endpoint ``z``) like the ``x`` field."""
        return self._dsm.draw(n, shapes, generator, dtype=dtype, device=device)

    def loss(self, model: torch.nn.Module, batch: Mapping[str, Tensor], draws: Mapping[str, Tensor]) -> Tensor:
        """Mean squared error between the model's velocity and ``z - x0``."""
        kind = getattr(model, "parameterization", None)
        if kind != "velocity":
            raise ConfigError(f"flow matching trains a velocity model; got parameterization {kind!r}")
        return self._dsm.loss(model, batch, draws)
