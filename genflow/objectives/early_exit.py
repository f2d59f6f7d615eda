"""Fine-tuning a truncated backbone: denoising loss with each sample exiting at its own depth.

``L = E_{t, x0, eps} w(t) || f_{d(t)}(x_t, t) - target ||^2``: the denoising score
matching loss of :class:`~genflow.objectives.dsm.DenoisingScoreMatching`, evaluated
through an :class:`~genflow.exit.model.EarlyExitModel`, so sample ``i`` of a mixed-t
batch runs ``d(t_i)`` blocks. The backbone groups samples by depth, so a step costs
the blocks actually run (the reference code runs every block for every sample and
gathers the exits). The time embedding stays frozen (:func:`freeze_time_embedding`).

References:
    Moon et al. 2024, "A Simple Early Exiting Framework for Accelerated Sampling in
    Diffusion Models" (ASE), sec. 3 (fine-tuning after truncation, time embedding frozen);
    Ho et al. 2020, eq. (14) (the denoising loss).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from genflow.errors import ComponentError
from genflow.exit.base import EXIT_POLICIES, ExitPolicy
from genflow.exit.model import EarlyExitModel, resolve_policy
from genflow.exit.schedules import StaircaseExit
from genflow.objectives.base import OBJECTIVES, Objective
from genflow.objectives.dsm import DenoisingScoreMatching
from genflow.process.gaussian import GaussianProcess
from genflow.train.settings import check_bool

__all__ = ["EarlyExitDSM", "freeze_time_embedding", "TIME_EMBEDDING_ATTRIBUTE"]

TIME_EMBEDDING_ATTRIBUTE = "time_embed"
"""The attribute under which genflow's transformer backbones (DiT, UViT) hold their time embedding."""


def freeze_time_embedding(model: nn.Module) -> list[nn.Parameter]:
    """Stop training the backbone's time embedding (``requires_grad = False``), as ASE fine-tuning does.

    Freeze before building the optimiser (or the ``Trainer``) and before wrapping in DDP.

    Args:
        model: A backbone holding its time embedding as ``time_embed`` (DiT, UViT).

    Returns:
        The parameters frozen.

    Raises:
        ComponentError: the model has no ``time_embed`` submodule.
    """
    params = list(_time_embedding(model, "freeze_time_embedding").parameters())
    for p in params:
        p.requires_grad_(False)
    return params


def _time_embedding(model: nn.Module, owner: str) -> nn.Module:
    module = getattr(model, TIME_EMBEDDING_ATTRIBUTE, None)
    if not isinstance(module, nn.Module):
        raise ComponentError(
            f"{owner} expects a backbone with a {TIME_EMBEDDING_ATTRIBUTE!r} submodule "
            f"(DiT, UViT); {type(model).__name__} has none"
        )
    return module


@OBJECTIVES.register("early_exit_dsm")
class EarlyExitDSM(Objective):
    """Denoising score matching through the early-exit schedule ``policy`` (per-sample depths).

    Args:
        policy: The exit schedule (an :class:`~genflow.exit.base.ExitPolicy`, its name or config);
            default the released ASE staircase as fractions of ``num_blocks``.
        process: The Gaussian process (or its config dict / registered name).
        weighting: Time weighting of the loss: ``none`` or ``min_snr`` (see ``DenoisingScoreMatching``).
        min_snr_gamma: ``gamma`` of ``min_snr``.
        t_min / t_max: Training times are uniform on ``[t_min, t_max]``; default the process's.
        cond_field: The batch field passed to the model as ``cond`` (e.g. ``"label"``).
        freeze_time_embedding: Let no gradient reach the backbone's ``time_embed`` (its output
            is detached during the loss), as ASE fine-tunes; for recipes, where the objective
            cannot freeze the model before the optimiser is built. (In Python,
            :func:`freeze_time_embedding` on the model does the same and skips its optimiser state.)

    Under ``DistributedDataParallel`` blocks no sample of a step reaches (and a frozen time
    embedding) would leave parameters without a gradient, which plain DDP refuses; the loss
    then adds ``0 *`` the sum of the trainable parameters, so every parameter gets a (zero)
    gradient and no ``find_unused_parameters`` is needed. With AdamW and no weight decay a
    zero gradient on a never-used parameter changes nothing, as no gradient does on one process.

    Raises:
        ConfigError: as ``DenoisingScoreMatching``. ComponentError / UnknownComponentError: a bad policy.
    """

    config_components = {"policy": EXIT_POLICIES.family, "process": "process"}  # from_config rebuilds them

    def __init__(
        self,
        policy: ExitPolicy | dict | str | None = None,
        process: GaussianProcess | dict | str = "vp",
        weighting: str = "none",
        min_snr_gamma: float = 5.0,
        t_min: float | None = None,
        t_max: float | None = None,
        cond_field: str | None = None,
        freeze_time_embedding: bool = False,
    ) -> None:
        self.policy = StaircaseExit.ase_dit_xl(relative=True) if policy is None else resolve_policy(policy)
        self.freeze_time_embedding = check_bool("freeze_time_embedding", freeze_time_embedding)
        self._dsm = DenoisingScoreMatching(process, weighting, min_snr_gamma, t_min, t_max, cond_field)
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
        """``t`` uniform on ``[t_min, t_max]`` and ``noise`` like the ``x`` field (as the denoising loss)."""
        return self._dsm.draw(n, shapes, generator, dtype=dtype, device=device)

    def loss(self, model: nn.Module, batch: Mapping[str, Tensor], draws: Mapping[str, Tensor]) -> Tensor:
        """Mean (weighted) denoising loss with sample ``i`` run through ``policy.depths(t_i)`` blocks."""
        backbone = model.module if isinstance(model, DistributedDataParallel) else model
        hook = None
        if self.freeze_time_embedding:
            embed = _time_embedding(backbone, "EarlyExitDSM(freeze_time_embedding=True)")
            hook = embed.register_forward_hook(lambda module, args, out: out.detach())
        try:
            loss = self._dsm.loss(self.exiting(model), batch, draws)
        finally:
            if hook is not None:
                hook.remove()
        if isinstance(model, DistributedDataParallel):  # every parameter gets a gradient (see the class docstring)
            loss = loss + 0.0 * sum(p.sum() for p in backbone.parameters() if p.requires_grad)
        return loss

    def exiting(self, model: nn.Module) -> EarlyExitModel:
        """``model`` seen through this objective's policy (no FLOP counting), e.g. to evaluate it."""
        return EarlyExitModel(model, self.policy, count_flops=False)

    def to_config(self) -> dict[str, Any]:
        config = super().to_config()
        config["policy"] = self.policy.to_config()
        config["process"] = self.process.to_config()
        return config
