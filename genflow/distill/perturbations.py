"""Input perturbations for ensemble distillation: none, Gaussian noise, ODS and ConfODS.

ODS (output-diversified sampling): for example ``n``, take teacher ``m_n`` and a random
projection ``w_n ~ U[-1, 1]^K``; the direction is

``d_n = grad_x sum_k w_nk softmax(f_{m_n}(x_n) / T)_k``, normalised per example
(``"l2"``: ``d / ||d||_2``; ``"linf"``: ``sign(d)``),

and the perturbed input is ``x'_n = clip(x_n + eta d_n, 0, 1)`` (one step). ConfODS scales
the step by the teacher's confidence ``c_n = max_k softmax(f_{m_n}(x_n) / T)_k``:
``x'_n = clip(x_n + eta c_n d_n, 0, 1)``, so confident (easy) inputs move further.
The teacher is drawn per example (the reference code draws one per minibatch; per example
keeps every draw sliceable across data-parallel processes and has the same expectation).

References:
    Tashiro et al. 2020, "Diversity can be Transferred: Output Diversification for White- and Black-box
    Attacks", NeurIPS, eq. 2 (ODS); Nam et al. 2021, "Diversity Matters When Learning From Ensembles",
    NeurIPS, sec. 3.2 (ODS for distillation, ConfODS).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from genflow.distill.base import PERTURBATIONS, Perturbation, check_step
from genflow.errors import ConfigError
from genflow.random import require_generator

__all__ = ["NoPerturbation", "GaussianPerturbation", "ODSPerturbation", "ConfODSPerturbation", "ods_direction",
           "NORMS"]  # fmt: skip

NORMS = ("l2", "linf")


def _per_example(v: Tensor, x: Tensor) -> Tensor:
    return v.reshape(-1, *([1] * (x.ndim - 1)))


@PERTURBATIONS.register("none")
class NoPerturbation(Perturbation):
    """Plain distillation: ``x' = x``."""

    moves_inputs: ClassVar[bool] = False

    def __init__(self) -> None:
        pass

    def draw(self, n: int, shape: tuple[int, ...], num_teachers: int, num_classes: int,
             generator: torch.Generator, *, dtype: torch.dtype, device: Any) -> dict[str, Tensor]:  # fmt: skip
        """Nothing to draw."""
        return {}

    def perturb(self, x: Tensor, teachers: Sequence[nn.Module], draws: Mapping[str, Tensor]) -> Tensor:
        """``x`` itself (detached)."""
        return x.detach()


@PERTURBATIONS.register("gaussian")
class GaussianPerturbation(Perturbation):
    """Isotropic Gaussian noise: ``x' = clip(x + sigma eps, 0, 1)``, ``eps ~ N(0, I)`` (the paper's baseline).

    Args:
        sigma: Noise standard deviation per pixel (default 0.25: on 8x8 digits the expected L2 length of the
            noise, ``8 sigma``, equals the default ODS step).

    Raises:
        ConfigError: a negative ``sigma``.
    """

    def __init__(self, sigma: float = 0.25) -> None:
        self.sigma = check_step("sigma", sigma)

    def draw(self, n: int, shape: tuple[int, ...], num_teachers: int, num_classes: int,
             generator: torch.Generator, *, dtype: torch.dtype, device: Any) -> dict[str, Tensor]:  # fmt: skip
        """``noise``: standard normal ``(n, *shape)``."""
        generator = require_generator(generator, f"{type(self).__name__}.draw")
        noise = torch.randn((n, *shape), generator=generator, device=generator.device, dtype=dtype)
        return {"noise": noise.to(device)}

    def perturb(self, x: Tensor, teachers: Sequence[nn.Module], draws: Mapping[str, Tensor]) -> Tensor:
        """``clip(x + sigma noise, 0, 1)``."""
        return (x.detach() + self.sigma * draws["noise"].to(x.dtype)).clamp(0.0, 1.0)


def _check_ods(step: object, temperature: object, norm: object) -> tuple[float, float, str]:
    step = check_step("step", step)
    temperature = check_step("temperature", temperature)
    if temperature <= 0.0:
        raise ConfigError(f"temperature must be > 0; got {temperature}")
    if norm not in NORMS:
        raise ConfigError(f"norm must be one of {', '.join(NORMS)}; got {norm!r}")
    return step, temperature, str(norm)


def _ods_draw(n: int, num_teachers: int, num_classes: int, generator: torch.Generator, dtype: torch.dtype,
              device: Any, where: str) -> dict[str, Tensor]:  # fmt: skip
    generator = require_generator(generator, where)
    teacher = torch.randint(0, num_teachers, (n,), generator=generator, device=generator.device)
    weights = 2.0 * torch.rand((n, num_classes), generator=generator, device=generator.device, dtype=dtype) - 1.0
    return {"teacher": teacher.to(device), "weights": weights.to(device)}


def ods_direction(
    x: Tensor, teachers: Sequence[nn.Module], teacher: Tensor, weights: Tensor, temperature: float, norm: str
) -> tuple[Tensor, Tensor]:
    """The normalised ODS direction of every example and its teacher's confidence.

    Args:
        x: Images ``(n, ...)``.
        teachers: The teacher networks (frozen).
        teacher: ``(n,)`` index of each example's teacher.
        weights: ``(n, K)`` random projection of each example.
        temperature: Softmax temperature ``T``.
        norm: ``"l2"`` or ``"linf"``.

    Returns:
        ``(direction, confidence)``: ``(n, ...)`` unit-``norm`` directions (zero where the gradient is zero)
        and ``(n,)`` ``max_k softmax(f_m(x) / T)_k``, both detached.
    """
    x_in = x.detach().requires_grad_(True)
    confidence = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
    projected = x_in.new_zeros(())
    with torch.enable_grad():
        for m, network in enumerate(teachers):
            rows = torch.nonzero(teacher == m).flatten()
            if rows.numel() == 0:
                continue
            probs = torch.softmax(network(x_in[rows]) / temperature, dim=-1)
            projected = projected + (weights[rows].to(probs.dtype) * probs).sum()
            confidence[rows] = probs.detach().amax(-1).to(x.dtype)
        if not projected.requires_grad:  # no example chose a teacher (n = 0)
            return torch.zeros_like(x), confidence
        (grad,) = torch.autograd.grad(projected, x_in)  # input gradient only; the graph is freed here
    if norm == "linf":
        return grad.sign(), confidence
    length = grad.flatten(1).norm(dim=1)
    return grad / _per_example(length.clamp_min(torch.finfo(grad.dtype).tiny), grad), confidence


@PERTURBATIONS.register("ods")
class ODSPerturbation(Perturbation):
    """One ODS step: ``x' = clip(x + eta d, 0, 1)`` (see the module docstring).

    Args:
        step: ``eta``, the step length in the ``norm``. The default 2.0 (L2) suits 8x8 digits (an RMS change of
            0.25 a pixel, the same expected length as the default Gaussian noise); the paper's CIFAR value is 1/255.
        temperature: ``T`` of the teacher's softmax.
        norm: ``"l2"`` (``||x' - x||_2 <= eta``) or ``"linf"`` (every pixel moves by at most ``eta``).

    Raises:
        ConfigError: a negative step, a non-positive temperature or an unknown norm.
    """

    def __init__(self, step: float = 2.0, temperature: float = 1.0, norm: str = "l2") -> None:
        self.step, self.temperature, self.norm = _check_ods(step, temperature, norm)

    def draw(self, n: int, shape: tuple[int, ...], num_teachers: int, num_classes: int,
             generator: torch.Generator, *, dtype: torch.dtype, device: Any) -> dict[str, Tensor]:  # fmt: skip
        """``teacher``: ``(n,)`` uniform in ``[0, num_teachers)``; ``weights``: ``(n, num_classes)`` U[-1, 1]."""
        return _ods_draw(n, num_teachers, num_classes, generator, dtype, device, f"{type(self).__name__}.draw")

    def perturb(self, x: Tensor, teachers: Sequence[nn.Module], draws: Mapping[str, Tensor]) -> Tensor:
        """``clip(x + eta d, 0, 1)``."""
        d, _ = ods_direction(x, teachers, draws["teacher"], draws["weights"], self.temperature, self.norm)
        return (x.detach() + self.step * d).clamp(0.0, 1.0)


@PERTURBATIONS.register("confods")
class ConfODSPerturbation(ODSPerturbation):
    """ODS with the step scaled by the teacher's confidence: ``x' = clip(x + eta c d, 0, 1)``.

    Args:
        step: ``eta``, the largest step (taken at confidence 1).
        temperature: ``T`` of the teacher's softmax (also the confidence's).
        norm: ``"l2"`` or ``"linf"``.

    Raises:
        ConfigError: as :class:`ODSPerturbation` (whose constructor and draws it shares).
    """

    def perturb(self, x: Tensor, teachers: Sequence[nn.Module], draws: Mapping[str, Tensor]) -> Tensor:
        """``clip(x + eta c d, 0, 1)``."""
        d, confidence = ods_direction(x, teachers, draws["teacher"], draws["weights"], self.temperature, self.norm)
        return (x.detach() + self.step * _per_example(confidence, x) * d).clamp(0.0, 1.0)
