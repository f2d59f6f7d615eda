"""ADP: purify with a few deterministic, adaptively sized steps along a score model's direction.

``x_0 = clip(x + sigma_inj eps, 0, 1)`` (the randomised start drowns the attack),
then at most ``K`` steps of ``x_{k+1} = clip(x_k + alpha_k g_k, 0, 1)`` with the
unit-scale direction ``g = f(x_k) = sigma s(x_k, sigma)`` and a step size from a
finite-difference line search along ``g``: ``g~ = f(x_k + delta g)``,
``z = <g, g~> / ||g||^2``, ``alpha = clip(lambda delta / (1 - z), alpha_min, alpha_max)``
(``1 - z`` measures the curvature along ``g``; for a Gaussian denoiser ``alpha = lambda sigma``).
A sample stops for good once its step size falls to ``stop_step`` or below.

In ``full`` gradient mode every step is back-propagated through ``g``; the line
search (``alpha``) and the stopping decisions are computed without gradient
(detached), as in the full-gradient re-evaluation of Croce et al. 2022.

References:
    Yoon, Hwang and Lee 2021, "Adversarial Purification with Score-based Generative Models", alg. 1 and sec. 3.2;
    Croce et al. 2022, "Evaluating the Adversarial Robustness of Adaptive Test-time Defenses", sec. 5 (ADP).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from genflow.errors import ConfigError
from genflow.model.base import ScoreModel
from genflow.process.gaussian import GaussianProcess
from genflow.purify.base import PURIFIERS
from genflow.purify.generative import ModelPurifier
from genflow.random import standard_normal
from genflow.sampling import ModelDenoiser

__all__ = ["ScorePurifier"]


def _positive(name: str, value: object, *, integer: bool = False, zero: bool = False) -> float:
    ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
    if not ok_type or isinstance(value, bool) or not math.isfinite(value) or value < 0 or (value == 0 and not zero):
        kind = "int" if integer else "number"
        raise ConfigError(f"{name} must be a {'non-negative' if zero else 'positive'} {kind}; got {value!r}")
    return value


@PURIFIERS.register("score")
class ScorePurifier(ModelPurifier):
    """Adaptive denoising purification (ADP) with a score or energy model on a variance-exploding process.

    Args:
        model: Score model (``ncsn``, ``energy_conv`` or any :class:`ScoreModel` on a VE process).
        process: Its process (``alpha(t) = 1``); default the model's ``process``.
        sigma_inj: Standard deviation of the injected noise, in pixel units (0.25 in the paper, on CIFAR-10).
        score_sigma: Noise level (pixel units) at which the direction ``f = sigma s(x, sigma)`` is evaluated;
            default ``sigma_inj``.
        max_steps: ``K``, the most steps (10 in the paper); 0 purifies by noise injection only.
        delta: Finite-difference length of the line search.
        step_scale: ``lambda`` of the step size.
        min_step / max_step: The clip of the step size.
        stop_step: A sample stops once its step size is at most this.
        surrogate_steps: ``K`` in ``surrogate`` gradient mode (the attacker's cheaper version).
        value_range: The model's training pixel range (``classification`` [0, 1] or ``generation`` [-1, 1]).
        checkpoint: In ``full`` mode, recompute each model call's activations in the backward pass.
        gradient_mode: ``full``, ``surrogate`` or ``bpda``.

    Raises:
        ConfigError: a process with ``alpha(t) != 1``, a ``score_sigma`` outside the process's noise levels,
            or a parameter of the wrong sign or type.
    """

    def __init__(
        self,
        model: ScoreModel | dict,
        process: GaussianProcess | dict | str | None = None,
        sigma_inj: float = 0.25,
        score_sigma: float | None = None,
        max_steps: int = 10,
        delta: float = 1e-3,
        step_scale: float = 0.05,
        min_step: float = 1e-5,
        max_step: float = 0.1,
        stop_step: float = 1e-3,
        surrogate_steps: int = 2,
        value_range: str = "classification",
        checkpoint: bool = False,
        gradient_mode: str = "full",
    ) -> None:
        super().__init__(model, process, value_range, gradient_mode)
        self.sigma_inj = float(_positive("sigma_inj", sigma_inj, zero=True))
        name = "score_sigma" if score_sigma is not None else "score_sigma (default: sigma_inj)"
        self.score_sigma = float(_positive(name, self.sigma_inj if score_sigma is None else score_sigma))
        self.max_steps = int(_positive("max_steps", max_steps, integer=True, zero=True))
        self.surrogate_steps = int(_positive("surrogate_steps", surrogate_steps, integer=True, zero=True))
        self.delta = float(_positive("delta", delta))
        self.step_scale = float(_positive("step_scale", step_scale))
        self.min_step, self.max_step = float(_positive("min_step", min_step)), float(_positive("max_step", max_step))
        self.stop_step = float(_positive("stop_step", stop_step, zero=True))
        if self.min_step > self.max_step:
            raise ConfigError(f"need min_step <= max_step; got {self.min_step} > {self.max_step}")
        self.checkpoint = bool(checkpoint)
        self.score_time = self._time_of(self.score_sigma * self.pixel_scale)

    def _time_of(self, sigma: float) -> float:
        """The process time whose noise level is ``sigma`` (model units) on a variance-exploding process."""
        probe = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
        if not torch.allclose(self.process.alpha(probe), torch.ones(3, dtype=torch.float64)):
            raise ConfigError(
                f"ScorePurifier needs a variance-exploding process (alpha(t) = 1, e.g. 've'); got "
                f"{type(self.process).__name__}: use DiffusionPurifier for other processes"
            )
        t = float(self.process.t_from_log_snr(torch.tensor(-math.log(sigma), dtype=torch.float64)))
        low, high = (float(self.process.sigma(torch.tensor(v, dtype=torch.float64))) for v in (0.0, 1.0))
        if not 0.0 <= t <= 1.0:
            raise ConfigError(
                f"score_sigma={sigma / self.pixel_scale:.4g} (pixel units) is outside the process's noise levels "
                f"[{low / self.pixel_scale:.4g}, {high / self.pixel_scale:.4g}]"
            )
        return t

    def _purify(self, x: Tensor, generator: torch.Generator, *, surrogate: bool) -> tuple[Tensor, int]:
        steps = self.surrogate_steps if surrogate else self.max_steps
        denoiser = ModelDenoiser(self.process, self.model, checkpoint=self.checkpoint)
        eps = standard_normal(x.shape, generator, dtype=x.dtype, device=x.device, where="ScorePurifier.purify")
        x = (x + self.sigma_inj * eps).clamp(0.0, 1.0)
        active = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
        evaluations = 0
        for _ in range(steps):
            index = active.nonzero().squeeze(1)
            if index.numel() == 0:
                break
            current = x[index]
            g = self.direction(denoiser, current)
            with torch.no_grad():  # the line search and the stopping rule carry no gradient (detached)
                alpha = self.step_size(denoiser, current.detach(), g.detach())
                moving = alpha > self.stop_step
            evaluations += 2 * index.numel()
            step = alpha[moving].reshape(-1, *([1] * (x.ndim - 1)))
            x = x.index_put((index[moving],), (current[moving] + step * g[moving]).clamp(0.0, 1.0))
            active[index[~moving]] = False
        return x, evaluations

    def direction(self, denoiser: ModelDenoiser, x: Tensor) -> Tensor:
        """``f(x) = sigma s(x, sigma)`` at pixel images ``x`` (unit scale; equal in pixel and model units)."""
        sigma = self.score_sigma * self.pixel_scale
        t = torch.full((x.shape[0],), self.score_time, dtype=x.dtype, device=x.device)
        return sigma * denoiser.score(self.to_model(x), t)

    def step_size(self, denoiser: ModelDenoiser, x: Tensor, g: Tensor) -> Tensor:
        """``clip(lambda delta / (1 - z), min_step, max_step)`` per sample, ``z = <g, f(x + delta g)> / |g|^2``."""
        ahead = self.direction(denoiser, x + self.delta * g)
        norm2 = g.flatten(1).pow(2).sum(1).clamp_min(torch.finfo(g.dtype).tiny)
        z = (g * ahead).flatten(1).sum(1) / norm2
        alpha = (self.step_scale * self.delta) / (1.0 - z)
        # z >= 1: no descent curvature along g; the clip of a negative (or infinite) step gives min_step
        alpha = torch.where(z >= 1.0, torch.full_like(alpha, self.min_step), alpha)
        return alpha.nan_to_num(nan=self.min_step).clamp(self.min_step, self.max_step)
