"""Energy-based score models: the score is ``-grad_x E(x, t)`` of a learned scalar energy.

References:
    Salimans & Ho 2021, "Should EBMs Model the Energy or the Score?", sec. 2 (score as
    ``-grad_x E``, trained by denoising score matching through the gradient);
    Song & Ermon 2019, "Generative Modeling by Estimating Gradients of the Data
    Distribution", eq. (2) (score ``grad_x log p = -grad_x E``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from genflow.errors import ComponentError, ConfigError, ShapeError
from genflow.model.base import MODELS, ScoreModel
from genflow.model.inputs import check_model_input, check_no_cond
from genflow.model.layers import TimestepEmbedding
from genflow.process.gaussian import check_parameterization
from genflow.validation import check_state

__all__ = ["EnergyScoreModel", "MLPEnergy", "MLPEnergyScoreModel"]


class EnergyScoreModel(ScoreModel):
    """Wrap an energy network ``E(x, t) -> (batch,)``; ``forward`` returns ``-grad_x E``.

    The gradient is taken under a local ``torch.enable_grad()``, so the model works
    inside ``torch.no_grad()`` sampling (the result is then detached). The graph of the
    gradient is kept (``create_graph=True``) when gradients are enabled and either the
    module is in training mode (denoising score matching trains ``E`` through its
    gradient) or ``x`` itself requires grad (attacks differentiating through the score).
    Samples must not interact inside ``E`` (no batch statistics): the gradient of
    ``sum_i E(x_i)`` is taken once for the whole batch.

    ``forward`` outputs ``-grad_x E`` interpreted in ``parameterization``; with the
    default ``score``, ``E`` is the energy of the noisy marginal (``p_t ~ exp(-E)``).
    A wrapped custom network has no JSON config unless you register a preset like
    :class:`MLPEnergyScoreModel`; ``to_config`` then raises :class:`ConfigError`.

    Args:
        energy_net: Module called as ``energy_net(x, t)`` returning one energy per sample.
            If it has an ``event_shape`` attribute, inputs are checked against it.
        parameterization: How the output is read (default ``score``).

    Raises:
        ComponentError: ``energy_net`` is not an ``nn.Module`` instance.
        ParameterizationError: unknown ``parameterization``.
    """

    def __init__(self, energy_net: nn.Module, parameterization: str = "score") -> None:
        super().__init__()
        if not isinstance(energy_net, nn.Module):
            got = f"the class {energy_net.__name__}" if isinstance(energy_net, type) else type(energy_net).__name__
            raise ComponentError(f"energy_net must be an nn.Module instance E(x, t) -> (batch,); got {got}")
        self.energy_net = energy_net
        self.parameterization = check_parameterization(parameterization)

    @property
    def event_shape(self) -> tuple[int, ...] | None:
        """The energy network's ``event_shape`` if it declares one."""
        shape = getattr(self.energy_net, "event_shape", None)
        return None if shape is None else tuple(shape)

    def energy(self, x: Tensor, t: Tensor) -> Tensor:
        """The energy ``E(x, t)``, one value per sample.

        Raises:
            ShapeError: the energy network's output is not ``(batch,)``, or bad ``x`` / ``t``.
        """
        param = next(self.energy_net.parameters(), None)
        x, t = check_model_input(x, t, self.event_shape, None if param is None else param.dtype, "EnergyScoreModel")
        energy = self.energy_net(x, t)
        if not isinstance(energy, Tensor) or energy.shape != (x.shape[0],):
            got = tuple(energy.shape) if isinstance(energy, Tensor) else type(energy).__name__
            raise ShapeError(f"energy_net must return one energy per sample, shape ({x.shape[0]},); got {got}")
        return energy

    def forward(self, x: Tensor, t: Tensor, *, cond: Any = None, exit: Any = None) -> Tensor:
        """``-grad_x E(x, t)``.

        Args:
            x: Noisy states.
            t: Times in ``[0, 1]``, scalar or per sample.
            cond: Must be ``None``.
            exit: Ignored (no exitable blocks).

        Returns:
            ``-grad_x E`` shaped like ``x``; detached unless a graph is kept (see class doc).

        Raises:
            ShapeError, DTypeError: bad ``x``, ``t`` or energy shape.
            ComponentError: ``cond`` given, or the energy does not depend on ``x``.

        Shapes:
            x: ``(batch, *event_shape)``; t: ``(batch,)``; output like ``x``.
        """
        x = check_state(x)
        check_no_cond(cond, "EnergyScoreModel")
        keep_graph = torch.is_grad_enabled() and (self.training or x.requires_grad)
        with torch.enable_grad():
            x_in = x if keep_graph and x.requires_grad else x.detach().requires_grad_(True)
            # a view, so module hooks that inspect the input's autograd node (FlopCounterMode's
            # module tracker) never see a leaf during autograd.grad
            energy = self.energy(x_in.view_as(x_in), t)
            grad = None
            if energy.requires_grad:
                (grad,) = torch.autograd.grad(energy.sum(), x_in, create_graph=keep_graph, allow_unused=True)
        if grad is None:
            raise ComponentError("energy_net's output does not depend on x, so it has no score")
        return -grad if keep_graph else -grad.detach()


class MLPEnergy(nn.Module):
    """``E(x, t) = |x|^2 / 2 + MLP([flatten(x), c(t)])`` for samples of any fixed shape.

    The quadratic term makes ``exp(-E)`` normalisable whatever the MLP learns and gives a
    fresh model roughly the score of ``N(0, I)``, the prior at ``t = 1``. SiLU keeps
    ``E`` smooth, so its gradient (the score) is differentiable in the parameters.

    Args:
        event_shape: Shape of one sample.
        hidden_size: Width of the hidden layers.
        depth: Number of hidden layers (>= 1).

    Shapes:
        x: ``(batch, *event_shape)``; t: ``(batch,)``; output: ``(batch,)``.
    """

    def __init__(self, event_shape: Sequence[int] = (2,), hidden_size: int = 128, depth: int = 2) -> None:
        super().__init__()
        self.event_shape = tuple(int(s) for s in event_shape)
        dim = math.prod(self.event_shape)
        self.time_embed = TimestepEmbedding(hidden_size, frequency_dim=64)
        self.input = nn.Linear(dim, hidden_size)
        self.hidden = nn.ModuleList(nn.Linear(hidden_size, hidden_size) for _ in range(depth - 1))
        self.output = nn.Linear(hidden_size, 1, bias=False)  # a constant shift of E changes no score

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        flat = x.reshape(x.shape[0], -1)
        h = nn.functional.silu(self.input(flat) + self.time_embed(t))
        for layer in self.hidden:
            h = nn.functional.silu(layer(h))
        return 0.5 * flat.pow(2).sum(-1) + self.output(h).squeeze(-1)


@MODELS.register("energy_mlp")
class MLPEnergyScoreModel(EnergyScoreModel):
    """A ready :class:`EnergyScoreModel` on an :class:`MLPEnergy`, with a JSON config.

    A preset: it only fixes the injected energy network so the config can rebuild it
    (the one subclass of a concrete class in genflow; its behaviour is the parent's).

    Args:
        event_shape: Shape of one sample (flat ``(d,)`` or images ``(C, H, W)``).
        hidden_size: Width of the energy MLP.
        depth: Hidden layers of the energy MLP (>= 1).
        parameterization: How the output is read (default ``score``).

    Raises:
        ConfigError: an empty or non-positive ``event_shape``, or a bad size.
    """

    def __init__(
        self, event_shape: Sequence[int] = (2,), hidden_size: int = 128, depth: int = 2, parameterization: str = "score"
    ) -> None:
        shape = tuple(event_shape) if isinstance(event_shape, (list, tuple)) else None
        if not shape or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape):
            raise ConfigError(f"event_shape must be a non-empty sequence of positive ints; got {event_shape!r}")
        for name, value in (("hidden_size", hidden_size), ("depth", depth)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be a positive int; got {value!r}")
        super().__init__(MLPEnergy(shape, hidden_size, depth), parameterization)
