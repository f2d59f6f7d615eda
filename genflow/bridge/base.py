"""The :class:`Bridge` ABC: a conditional bridge from a paired source (t = 1) to its target (t = 0).

A bridge learns ``p(target | source, cond)`` by noise prediction on a bridge
process between the paired end points (the process is injected: a
:class:`~genflow.process.BrownianBridge` first, any process with the same
``marginal(x0, t, x1=)``, ``posterior``, ``sigma``, ``x0_from_eps`` and ``eps_from_x0``
maps works), and samples through the process posterior on **the same discrete
times it was trained on**: ``t_n = n / N``, ``n = 1..N`` (``N = steps``), from
``z = source`` at ``t_N = 1`` down to ``t_0 = 0``:

``x0_hat = z - sigma_{t_n} eps(z, cond, t_n)``, ``z ~ q(z_{t_{n-1}} | x0_hat, z)``.

The last step (``t_0 = 0``) has zero posterior variance, so the sample is ``x0_hat``.
Training draws ``n`` uniformly from ``1..N``, never another time.

References:
    Kim et al. 2024, "Fast Ensembling with Diffusion Schroedinger Bridge" (Diffusion Bridge Networks, ICLR 2024);
    Liu et al. 2023, "I2SB: Image-to-Image Schroedinger Bridge" (the bridge posterior used for sampling).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from genflow.config import Configurable, build_component
from genflow.errors import ComponentError, ConfigError, NonFiniteError, ShapeError
from genflow.metrics.calibration import fit_temperature
from genflow.process.base import Process
from genflow.random import require_generator
from genflow.registry import Registry

__all__ = ["Bridge", "BRIDGES", "BRIDGE_PROCESS_METHODS", "calibrate", "check_endpoints", "time_index"]

BRIDGE_PROCESS_METHODS = ("marginal", "posterior", "sigma", "x0_from_eps", "eps_from_x0")


def check_endpoints(source: object, cond: object, target: object | None = None, *, where: str = "bridge") -> Tensor:
    """Check paired end points: ``source`` ``(b, K)`` finite floats, ``target`` like it, ``cond`` ``(b, ...)``.

    Returns:
        ``source``.

    Raises:
        ShapeError: not a floating ``(b, K)`` source, a target of another shape, or a ``cond`` whose batch
            differs from the source's.
        NonFiniteError: a non-finite source or target (logits must be finite).
    """
    if not isinstance(source, Tensor) or not source.is_floating_point() or source.ndim != 2:
        given = tuple(source.shape) if isinstance(source, Tensor) else type(source).__name__
        raise ShapeError(f"{where}: source must be floating logits of shape (batch, num_classes); got {given}")
    for name, value in (("target", target),) if target is not None else ():
        if not isinstance(value, Tensor) or value.shape != source.shape:
            given = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
            raise ShapeError(f"{where}: {name} must have the source's shape {tuple(source.shape)}; got {given}")
    if not isinstance(cond, Tensor) or cond.ndim < 1 or cond.shape[0] != source.shape[0]:
        given = tuple(cond.shape) if isinstance(cond, Tensor) else type(cond).__name__
        raise ShapeError(f"{where}: cond must have the source's batch {source.shape[0]} first; got {given}")
    for name, value in (("source", source), ("target", target)):
        if value is not None and not bool(torch.isfinite(value).all()):
            raise NonFiniteError(f"{where}: the {name} logits hold non-finite values (nan or inf)")
    return source


def time_index(u: Tensor, steps: int) -> Tensor:
    """Map uniform draws ``u`` in ``[0, 1)`` to the time indices ``1..steps`` (each with probability 1 / steps)."""
    return (u * steps).floor().long().clamp(0, steps - 1) + 1


class Bridge(Configurable, nn.Module, ABC):
    """A conditional bridge between paired end points (see the module docstring).

    Subclasses implement :meth:`eps` (the noise prediction), :meth:`predict` (the deployed prediction from
    raw inputs) and :meth:`flops`. The loss and the multi-step sampler are shared.

    Args:
        process: The bridge process (instance, registered name or config); default ``brownian_bridge``.
        steps: ``N``, the number of discrete times trained on and sampled at.

    Raises:
        ComponentError: a process without the bridge maps.
        ConfigError: ``steps`` not an int >= 1.
    """

    config_components: ClassVar[Mapping[str, str]] = {"process": "process"}
    fields: ClassVar[tuple[str, ...]] = ("source", "target", "cond")

    def __init__(self, process: Process | str | dict[str, Any] = "brownian_bridge", steps: int = 5) -> None:
        nn.Module.__init__(self)
        process = build_component("process", process, f"{type(self).__name__}.process")
        missing = [m for m in BRIDGE_PROCESS_METHODS if not callable(getattr(process, m, None))]
        if not isinstance(process, Process) or missing:
            raise ComponentError(f"{type(self).__name__}.process must be a bridge process with "
                                 f"{', '.join(BRIDGE_PROCESS_METHODS)}; got {type(process).__name__} "
                                 f"lacking {missing}")  # fmt: skip
        if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
            raise ConfigError(f"steps must be an int >= 1; got {steps!r}")
        self.process, self.steps = process, steps
        self.register_buffer("output_temperature", torch.ones((), dtype=torch.float64))

    # ------------------------------------------------------------------ what subclasses implement
    @abstractmethod
    def eps(self, z: Tensor, cond: Tensor, t: Tensor) -> Tensor:
        """Predicted noise ``(z_t - z_0) / sigma_t`` at ``z`` ``(b, K)`` given ``cond``, times ``t`` ``(b,)``."""

    @abstractmethod
    def predict(self, x: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """Calibrated class probabilities ``(b, K)`` of raw inputs ``x`` (the deployed prediction)."""

    @abstractmethod
    def flops(self, batch: int = 1) -> int:
        """FLOPs of one :meth:`predict` on ``batch`` inputs."""

    # ------------------------------------------------------------------ shared numerics
    def times(self, steps: int | None = None) -> Tensor:
        """The sampling grid ``t_n = n / steps``, ``n = steps, ..., 0`` (descending, float64)."""
        steps = self._check_steps(steps)
        return torch.arange(steps, -1, -1, dtype=torch.float64) / steps

    def _check_steps(self, steps: int | None) -> int:
        steps = self.steps if steps is None else steps
        if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1 or self.steps % steps:
            raise ConfigError(f"steps must divide the trained {self.steps} (its times n / {steps} are then trained "
                              f"times); got {steps!r}")  # fmt: skip
        return steps

    def check_pair(self, source: Tensor, cond: Tensor) -> None:  # noqa: B027  (optional hook)
        """Further checks of a source and its conditioning (class count, feature shape); none by default."""

    def prepare(self, batch: Mapping[str, Tensor], draws: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """The end points a batch holds, as the bridge sees them (a subclass may transform them, e.g. a
        temperature drawn in ``draws``); by default the batch's ``source``, ``target`` and ``cond``.

        Raises:
            ShapeError: a missing field.
        """
        missing = [f for f in self.fields if f not in batch]
        if missing:
            raise ShapeError(f"{type(self).__name__} needs batch fields {self.fields}; missing {missing}")
        check_endpoints(batch["source"], batch["cond"], batch["target"], where=type(self).__name__)
        self.check_pair(batch["source"], batch["cond"])
        return {f: batch[f] for f in self.fields}

    def _unit_scale(self, like: Tensor) -> Tensor:
        return self.process.sigma(torch.ones((), dtype=like.dtype, device=like.device)) ** 2

    def corrupt(self, target: Tensor, source: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """A draw of the forward marginal ``q(z_t | z_0 = target, z_1 = source)`` from standard normal ``noise``."""
        mean, std = self.process.marginal(target, t, x1=source)
        return mean + std * noise

    def loss(self, batch: Mapping[str, Tensor], draws: Mapping[str, Tensor]) -> Tensor:
        """Noise-prediction loss on paired end points, at the times the sampler visits.

        ``z_t = (1 - t) target + t source + std_t noise`` with ``t = n / N``, ``n = time_index(draws["time"])``;
        loss ``sigma_1^2 mean ||eps(z_t, cond, t) - (z_t - target) / sigma_t||^2`` (the ``sigma_1^2 = beta``
        factor only rescales the loss to logit units).

        Args:
            batch: ``source`` ``(b, K)`` (t = 1), ``target`` ``(b, K)`` (t = 0), ``cond`` ``(b, ...)``.
            draws: ``time`` ``(b,)`` uniform in ``[0, 1)``, ``noise`` ``(b, K)`` standard normal (and what
                :meth:`prepare` reads).

        Raises:
            ShapeError / NonFiniteError: malformed end points (:func:`check_endpoints`, :meth:`check_pair`).
        """
        ends = self.prepare(batch, draws)
        source, target, cond = ends["source"], ends["target"], ends["cond"]
        t = time_index(draws["time"].to(source.device), self.steps).to(source.dtype) / self.steps
        z = self.corrupt(target, source, t, draws["noise"].to(source))
        eps_target = self.process.eps_from_x0(z, target, t)
        return self._unit_scale(source) * (self.eps(z, cond, t) - eps_target).pow(2).mean()

    def distillation_loss(self, batch: Mapping[str, Tensor], draws: Mapping[str, Tensor]) -> Tensor:
        """One-step distillation: ``mean ||x0_hat(source, t = 1) - target||^2`` where ``target`` is a multi-step
        teacher's sample from the same source (:func:`~genflow.bridge.training.distillation_pairs`).

        References:
            Kim et al. 2024, "Fast Ensembling with Diffusion Schroedinger Bridge" (one-step distillation).
        """
        ends = self.prepare(batch, draws)
        source, target, cond = ends["source"], ends["target"], ends["cond"]
        t = torch.ones(source.shape[0], dtype=source.dtype, device=source.device)
        x0_hat = self.process.x0_from_eps(source, self.eps(source, cond, t), t)
        return (x0_hat - target).pow(2).mean()

    def sample(
        self,
        source: Tensor,
        cond: Tensor,
        steps: int | None = None,
        generator: torch.Generator | None = None,
        *,
        noise: bool = True,
    ) -> Tensor:
        """Sample the target from ``source`` through the process posterior on the trained grid.

        Args:
            source: End point at t = 1, ``(b, K)``.
            cond: Conditioning, ``(b, ...)``.
            steps: Steps (must divide the trained ``N``; default ``N``).
            generator: Source of the posterior noise (needed when ``noise`` and more than one step).
            noise: Draw the posterior noise; False takes the posterior mean (deterministic).

        Returns:
            The sample at t = 0, ``(b, K)``.

        Raises:
            ShapeError / NonFiniteError: malformed inputs. ConfigError: ``steps`` not dividing ``N``.
            GeneratorRequiredError: ``noise`` with more than one step and no generator.
        """
        check_endpoints(source, cond, where=f"{type(self).__name__}.sample")
        self.check_pair(source, cond)
        grid = self.times(steps).to(source.dtype)
        if noise and len(grid) > 2:
            generator = require_generator(generator, f"{type(self).__name__}.sample")
        z = source
        for t, s in zip(grid[:-1].tolist(), grid[1:].tolist(), strict=True):
            tt = torch.full((z.shape[0],), t, dtype=z.dtype, device=z.device)
            x0_hat = self.process.x0_from_eps(z, self.eps(z, cond, tt), tt)
            mean, std = self.process.posterior(x0_hat, z, tt, s)
            if noise and s > 0:
                draw = torch.randn(z.shape, generator=generator, device=generator.device, dtype=z.dtype)
                z = mean + std * draw.to(z.device)
            else:
                z = mean
        return z

    # ------------------------------------------------------------------ deployment
    def forward(self, x: Tensor) -> Tensor:
        """Log of :meth:`predict` (valid logits), so a bridge evaluates like a classifier."""
        return self.predict(x).clamp_min(torch.finfo(torch.float32).tiny).log()

    def calibrate(self, x: Tensor, labels: Tensor, *, generator: torch.Generator | None = None) -> float:
        """Fit the output temperature on held-out data and keep it (:func:`calibrate`); returns it."""
        return calibrate(self, x, labels, generator=generator)

    def scaled(self, z: Tensor) -> Tensor:
        """Probabilities ``softmax(z / output_temperature)``."""
        return torch.softmax(z / self.output_temperature.to(z.dtype), dim=-1)


def calibrate(model: nn.Module, x: Tensor, labels: Tensor, *, generator: torch.Generator | None = None) -> float:
    """Temperature scaling of a bridge's output: reset ``model.output_temperature`` to 1, fit the temperature
    minimising the NLL of ``softmax(log predict(x) / T)`` on held-out ``(x, labels)`` and store it.

    References:
        Guo et al. 2017, "On Calibration of Modern Neural Networks", sec. 4.2.
    """
    model.output_temperature.fill_(1.0)
    with torch.no_grad():
        log_probs = model.predict(x, generator=generator).double().clamp_min(1e-300).log()
    temperature = fit_temperature(log_probs, labels)
    model.output_temperature.fill_(temperature)
    return temperature


BRIDGES: Registry[Bridge] = Registry("bridge", Bridge)
