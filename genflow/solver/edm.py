"""EDM's deterministic Heun sampler (Karras et al. 2022, Algorithm 1), on any Gaussian process.

A worked example of :class:`~genflow.solver.diffusion.DiffusionSampler`: one
file, one hook. With the scale ``s = alpha`` and the noise level
``sigma_hat = sigma / alpha`` (Karras et al. 2022, eq. 4), the scaled state
``x_hat = x / alpha`` follows the probability-flow ODE

    ``dx_hat / dsigma_hat = (x_hat - D(x_hat; sigma_hat)) / sigma_hat``

whose slope is the model's ``eps`` prediction (``x_hat = x0 + sigma_hat eps``).
Heun's method integrates it in ``sigma_hat``; the last step is an Euler step
(in the paper it lands on ``sigma = 0``, where the slope is undefined), so a
run of ``N`` steps costs ``2N - 1`` model calls. It works on VP, sub-VP and VE
processes alike (VE: ``alpha = 1``, ``sigma_hat = sigma``).

References:
    Karras et al. 2022, "Elucidating the Design Space of Diffusion-Based
    Generative Models", Algorithm 1 and eq. (4).
"""

from __future__ import annotations

from genflow.solver.base import SOLVERS
from genflow.solver.diffusion import DiffusionSampler

__all__ = ["EDMHeun"]


@SOLVERS.register("edm_heun")
class EDMHeun(DiffusionSampler):
    """Deterministic second-order Heun sampler in ``sigma_hat = sigma / alpha`` (EDM, Algorithm 1).

    Step ``k`` (``sigma_hat`` from ``c_k`` to ``c_{k+1}``, slope ``d = eps_hat``)::

        x_hat' = x_hat_k + (c_{k+1} - c_k) d(x_hat_k, c_k)                       # Euler
        x_hat_{k+1} = x_hat_k + (c_{k+1} - c_k) (d(x_hat_k, c_k) + d(x_hat', c_{k+1})) / 2   # Heun

    with the correction skipped on the last step.
    """

    order = 2
    nfe_per_step = 2
    default_grid = "karras"  # measured: tied with uniform in docs/benchmarks/default_grids.md

    def __init__(self) -> None:
        pass

    def _step(self, x, x0, eps, k, run):
        sch = run.schedule
        a_t, a_s = sch.alpha[k], sch.alpha[k + 1]
        dc = sch.sigma[k + 1] / a_s - sch.sigma[k] / a_t  # sigma_hat step (negative)
        x_hat = x / a_t
        euler = x_hat + dc * eps
        if k == sch.steps - 1:
            return a_s * euler
        _, eps_next = run.predict(a_s * euler, k + 1)
        return a_s * (x_hat + (0.5 * dc) * (eps + eps_next))
