"""A diffusion sampler registered the way a user's plugin module would, for the registry-wide tests."""

from __future__ import annotations

import genflow as gf


class ExponentialEulerX0(gf.DiffusionSampler):
    """First-order exponential integrator written in x0 form (algebraically DDIM, eta = 0).

    ``x_s = (sigma_s / sigma_t) x_t + (alpha_s - alpha_t sigma_s / sigma_t) x0``.
    """

    order = 1
    default_grid = "uniform"

    def __init__(self) -> None:
        pass

    def _step(self, x, x0, eps, k, run):
        sch = run.schedule
        ratio = sch.sigma[k + 1] / sch.sigma[k]
        return ratio * x + (sch.alpha[k + 1] - sch.alpha[k] * ratio) * x0


PLUGIN_NAME = "plugin_exponential_euler_x0"


def register() -> str:
    """Register the plugin sampler once (idempotent, like importing a plugin module twice)."""
    if PLUGIN_NAME not in gf.SOLVERS:
        gf.SOLVERS.register(PLUGIN_NAME)(ExponentialEulerX0)
    return PLUGIN_NAME
