"""Problems with known answers, for genflow's tests and for users checking their own parts.

* :class:`LinearODE` ``dx/dt = A x`` with solution ``expm(A (t - t0)) x0``;
* :class:`OrnsteinUhlenbeck` and :class:`GeometricBrownianMotion` SDEs with
  closed-form moments (and, for GBM, the exact path given the Brownian motion);
* :class:`GaussianMixture` data and :class:`GaussianMixtureScore`, the exact
  score of its marginal under any Gaussian process, in any parameterisation,
  so any sampler can be checked against a known distribution.

Importing this module registers nothing; :func:`register_test_models` adds
:class:`GaussianMixtureScore` to ``MODELS`` (as ``gaussian_mixture_score``) on request,
as genflow's own test suite does in its ``conftest.py``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor

from genflow.errors import ShapeError
from genflow.model.base import MODELS, ScoreModel
from genflow.model.inputs import check_model_input
from genflow.process.gaussian import GaussianProcess, check_parameterization
from genflow.random import require_generator, standard_normal
from genflow.validation import check_instance

__all__ = [
    "LinearODE",
    "OrnsteinUhlenbeck",
    "GeometricBrownianMotion",
    "GaussianMixture",
    "GaussianMixtureScore",
    "register_test_models",
]


class LinearODE:
    """``dx/dt = A x`` for states ``(batch, d)``; exact solution by ``torch.linalg.matrix_exp``."""

    def __init__(self, matrix: Tensor) -> None:
        matrix = torch.as_tensor(matrix)
        if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
            raise ShapeError(f"matrix must be square (d, d); got {tuple(matrix.shape)}")
        self.matrix = matrix

    def __call__(self, x: Tensor, t: Tensor) -> Tensor:
        return x @ self.matrix.to(x).T

    def solution(self, x0: Tensor, t0: float, t1: float) -> Tensor:
        """State at ``t1`` starting from ``x0`` at ``t0``."""
        a = self.matrix.to(torch.float64)
        return (x0.to(torch.float64) @ torch.linalg.matrix_exp(a * (t1 - t0)).T).to(x0.dtype)


class OrnsteinUhlenbeck:
    """``dx = theta (mu - x) dt + s dW`` (additive noise); elementwise on any shape."""

    additive_noise: ClassVar[bool] = True

    def __init__(self, theta: float = 1.0, mu: float = 0.0, s: float = 0.5) -> None:
        self.theta, self.mu, self.s = float(theta), float(mu), float(s)

    def drift(self, x: Tensor, t: Tensor) -> Tensor:
        return self.theta * (self.mu - x)

    def diffusion(self, x: Tensor, t: Tensor) -> Tensor:
        return torch.full_like(x, self.s)

    def moments(self, x0: Tensor, duration: float) -> tuple[Tensor, Tensor]:
        """Mean and variance of ``x`` after ``duration`` from ``x0``."""
        decay = math.exp(-self.theta * duration)
        mean = self.mu + (x0 - self.mu) * decay
        var = self.s**2 / (2 * self.theta) * (1 - decay**2)
        return mean, torch.full_like(x0, var)


class GeometricBrownianMotion:
    """``dx = mu x dt + s x dW`` (diagonal multiplicative noise)."""

    additive_noise: ClassVar[bool] = False

    def __init__(self, mu: float = 1.0, s: float = 0.5) -> None:
        self.mu, self.s = float(mu), float(s)

    def drift(self, x: Tensor, t: Tensor) -> Tensor:
        return self.mu * x

    def diffusion(self, x: Tensor, t: Tensor) -> Tensor:
        return self.s * x

    def exact(self, x0: Tensor, duration: float, w: Tensor) -> Tensor:
        """The path's value after ``duration`` given the Brownian increment ``w`` over it."""
        return x0 * torch.exp((self.mu - 0.5 * self.s**2) * duration + self.s * w)

    def moments(self, x0: Tensor, duration: float) -> tuple[Tensor, Tensor]:
        """Mean and variance after ``duration``."""
        mean = x0 * math.exp(self.mu * duration)
        return mean, mean**2 * math.expm1(self.s**2 * duration)


class GaussianMixture:
    """Mixture of Gaussians on events of any shape (flattened to ``d`` for covariances).

    Args:
        weights: ``(K,)`` non-negative, normalised internally.
        means: ``(K, *event_shape)``.
        covariances: ``(K, d, d)`` symmetric positive definite, ``d = prod(event_shape)``.
    """

    def __init__(self, weights: Tensor | Sequence[float], means: Tensor, covariances: Tensor) -> None:
        weights = torch.as_tensor(weights, dtype=torch.float64)
        means = torch.as_tensor(means, dtype=torch.float64)
        covariances = torch.as_tensor(covariances, dtype=torch.float64)
        k = weights.numel()
        self.event_shape = tuple(means.shape[1:])
        d = math.prod(self.event_shape)
        if means.shape[0] != k or covariances.shape != (k, d, d):
            raise ShapeError(
                f"expected weights (K,), means (K, *event) and covariances (K, d, d); got {tuple(weights.shape)}, "
                f"{tuple(means.shape)}, {tuple(covariances.shape)}"
            )
        self.weights = weights / weights.sum()
        self.means = means
        self.covariances = covariances
        self.eigenvalues, self.eigenvectors = torch.linalg.eigh(covariances)  # cov = U diag(lam) U^T

    @classmethod
    def isotropic(cls, weights: Sequence[float], means: Tensor, std: float | Sequence[float]) -> GaussianMixture:
        """Components with covariance ``std_k^2 I``."""
        means = torch.as_tensor(means, dtype=torch.float64)
        k, d = means.shape[0], math.prod(means.shape[1:])
        std = torch.as_tensor(std, dtype=torch.float64).expand(k)
        return cls(weights, means, std.reshape(k, 1, 1) ** 2 * torch.eye(d, dtype=torch.float64))

    @property
    def dim(self) -> int:
        return math.prod(self.event_shape)

    def sample(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """``n`` draws (float64) and their component labels."""
        generator = require_generator(generator, "GaussianMixture.sample")
        weights = self.weights.to(generator.device)  # multinomial needs the generator's device
        labels = torch.multinomial(weights, n, replacement=True, generator=generator).cpu()
        z = standard_normal((n, self.dim), generator, dtype=torch.float64, device="cpu")
        scale = self.eigenvectors[labels] * self.eigenvalues[labels].sqrt().unsqueeze(1)
        x = self.means[labels].reshape(n, -1) + (scale @ z.unsqueeze(-1)).squeeze(-1)
        return x.reshape(n, *self.event_shape), labels

    def at(self, process: GaussianProcess, t: float) -> GaussianMixture:
        """The marginal at time ``t``: means ``alpha mu``, covariances ``alpha^2 Sigma + sigma^2 I``."""
        tt = torch.tensor(float(t), dtype=torch.float64)
        a, s = float(process.alpha(tt)), float(process.sigma(tt))
        eye = torch.eye(self.dim, dtype=torch.float64)
        return GaussianMixture(self.weights, a * self.means, a**2 * self.covariances + s**2 * eye)

    def _posterior(self, x: Tensor, alpha: Tensor, sigma: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Log joint ``(B, K)``, ``C_k^{-1}(x - alpha mu_k)`` and ``Sigma_k C_k^{-1}(x - alpha mu_k)`` ``(B, K, d)``.

        ``C_k = alpha^2 Sigma_k + sigma^2 I`` is diagonalised once by ``Sigma_k = U diag(lam) U^T``.
        """
        flat = x.reshape(x.shape[0], -1).to(torch.float64)
        alpha = alpha.to(torch.float64).reshape(-1, 1, 1)
        sigma = sigma.to(torch.float64).reshape(-1, 1, 1)
        diff = flat.unsqueeze(1) - alpha * self.means.reshape(1, -1, self.dim)  # (B, K, d)
        lam = alpha**2 * self.eigenvalues.unsqueeze(0) + sigma**2  # (B, K, d)
        coords = torch.einsum("kde,bkd->bke", self.eigenvectors, diff)  # U^T diff
        log_n = -0.5 * ((coords**2 / lam).sum(-1) + torch.log(lam).sum(-1) + self.dim * math.log(2 * math.pi))
        precision_diff = torch.einsum("kde,bke->bkd", self.eigenvectors, coords / lam)
        gain_diff = torch.einsum("kde,bke->bkd", self.eigenvectors, coords * self.eigenvalues.unsqueeze(0) / lam)
        return torch.log(self.weights).unsqueeze(0) + log_n, precision_diff, gain_diff

    def _unit(self, x: Tensor) -> tuple[Tensor, Tensor]:
        one = torch.ones(x.shape[0], dtype=torch.float64)
        return one, torch.zeros_like(one)

    def log_prob(self, x: Tensor) -> Tensor:
        """Log density at ``x`` (shape ``(batch, *event)``), float64."""
        return torch.logsumexp(self._posterior(x, *self._unit(x))[0], dim=1)

    def responsibilities(self, x: Tensor) -> Tensor:
        """Posterior component probabilities ``(batch, K)``."""
        return torch.softmax(self._posterior(x, *self._unit(x))[0], dim=1)

    def denoise(self, x: Tensor, alpha: Tensor, sigma: Tensor) -> tuple[Tensor, Tensor]:
        """Exact ``(E[x0 | x_t = x], grad log p_t(x))`` with per-sample ``alpha``, ``sigma`` ``(batch,)``.

        Both stay finite where ``alpha = 0`` or ``sigma = 0``, unlike conversions
        through ``(x - sigma eps) / alpha``.
        """
        log_joint, precision_diff, gain_diff = self._posterior(x, alpha, sigma)
        r = torch.softmax(log_joint, dim=1).unsqueeze(-1)
        score = -(r * precision_diff).sum(1)
        a = alpha.to(torch.float64).reshape(-1, 1)
        x0 = (r * (self.means.reshape(1, -1, self.dim) + a.unsqueeze(-1) * gain_diff)).sum(1)
        return x0.reshape(x.shape).to(x.dtype), score.reshape(x.shape).to(x.dtype)


class GaussianMixtureScore(ScoreModel):
    """Exact model of a Gaussian mixture's marginals under a Gaussian process.

    Args:
        mixture: The data distribution.
        process: The process whose marginals it scores.
        parameterization: Output parameterisation (``eps``, ``x0``, ``v``, ``score``, ``velocity``).
    """

    config_components = {"process": "process"}

    def __init__(self, mixture: GaussianMixture, process: GaussianProcess, parameterization: str = "eps") -> None:
        super().__init__()
        self.mixture = mixture
        self.process = check_instance(process, GaussianProcess, "process")
        self.parameterization = check_parameterization(parameterization)

    @property
    def event_shape(self) -> tuple[int, ...]:
        """Shape of one sample (the mixture's)."""
        return self.mixture.event_shape

    def forward(self, x: Tensor, t: Tensor, *, cond: Any = None, exit: Any = None) -> Tensor:
        x, t = check_model_input(x, t, self.event_shape, None, "GaussianMixtureScore")
        sigma = self.process.sigma(t.double())
        x0, score = self.mixture.denoise(x, self.process.alpha(t.double()), sigma)
        eps = -sigma.to(x.dtype).reshape(-1, *([1] * (x.ndim - 1))) * score
        return self.process.from_x0_eps(x0, eps, self.parameterization, x, t)

    def to_config(self) -> dict[str, Any]:
        mixture = self.mixture
        return {
            "name": type(self).registry_name or type(self).__name__,
            "mixture": {
                "weights": mixture.weights.tolist(),
                "means": mixture.means.tolist(),
                "covariances": mixture.covariances.tolist(),
            },
            "process": self.process.to_config(),
            "parameterization": self.parameterization,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> GaussianMixtureScore:
        config = dict(config)
        if isinstance(config.get("mixture"), dict):
            config["mixture"] = GaussianMixture(**config["mixture"])
        return super().from_config(config)


def register_test_models() -> None:
    """Register :class:`GaussianMixtureScore` in ``MODELS`` as ``gaussian_mixture_score`` (once; idempotent)."""
    if "gaussian_mixture_score" not in MODELS:
        MODELS.register("gaussian_mixture_score")(GaussianMixtureScore)
