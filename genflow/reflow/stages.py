"""Small helpers shared by the reflow pipeline's stages in Python (the example, the demo section, the benchmark).

:func:`train_stage` trains one stage (1-RF, reflow, SeqRF, a distillation),
optionally starting from a copy of a trained model's weights, and returns its
EMA weights; :func:`euler_sampler` is the Euler sampler of a model with ``K``
segments (segment-restart Euler for ``K > 1``, whose grid restarts at the
boundaries). The recipes do the same from the command line (docs/reflow.md).
"""

from __future__ import annotations

from typing import Any

from torch import nn
from torch.utils.data import Dataset

from genflow.objectives.base import Objective
from genflow.process.interpolant import LinearInterpolant
from genflow.reflow.sampler import SegmentEuler
from genflow.sampling import Sampler
from genflow.solver.ode import Euler
from genflow.train.trainer import Trainer

__all__ = ["train_stage", "euler_sampler"]


def train_stage(model: nn.Module, objective: Objective, data: Dataset, **trainer: Any) -> nn.Module:
    """Train ``model`` (in place) on ``data`` and return its EMA model (its trained weights without EMA).

    A model that is itself a frozen EMA copy (``copy.deepcopy`` of an earlier stage) is made trainable first.

    Args:
        trainer: :class:`~genflow.train.Trainer` settings (``steps``, ``batch_size``, ``lr``, ``seed`` ...;
            ``progress`` defaults to False).
    """
    trainer.setdefault("progress", False)
    fitted = Trainer(model.train().requires_grad_(True), objective, **trainer)
    fitted.fit(data)
    return (fitted.ema if fitted.ema is not None else fitted.model).eval()


def euler_sampler(model: nn.Module, segments: int = 1) -> Sampler:
    """Euler steps on the linear interpolant, restarting at ``segments`` uniform segment boundaries."""
    return Sampler(LinearInterpolant(), model, SegmentEuler(segments) if segments > 1 else Euler())
