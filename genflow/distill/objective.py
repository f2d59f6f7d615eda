"""Knowledge distillation of a deep ensemble into a single network or a BatchEnsemble, on perturbed inputs.

``L = (1 - alpha) CE(g(x), y) + alpha tau^2 KL(p_T(x') || softmax(g(x') / tau))``

with ``x`` the (randomly cropped) training image, ``x'`` its perturbation (:mod:`genflow.distill.perturbations`)
and ``p_T`` the teachers' tempered prediction: for a single student the ensemble mean
``1/M sum_m softmax(f_m(x') / tau)``; for a :class:`~genflow.distill.BatchEnsemble` student with ``M``
members, member ``i`` is matched to teacher ``i`` (``softmax(f_i(x') / tau)``) and both terms are averaged
over members. The teachers are the members of an ensemble run folder, held frozen by reference
(:class:`~genflow.train.HeldNetwork`: not in the student's parameters, optimiser, EMA or checkpoint
weights; their checkpoints' SHA-256 is recorded and checked on resume).

References:
    Hinton, Vinyals and Dean 2015, "Distilling the Knowledge in a Neural Network" (the tau^2-scaled KD loss);
    Nam et al. 2021, "Diversity Matters When Learning From Ensembles", NeurIPS, eq. 4 (KD on perturbed inputs).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genflow.classify.base import Classifier
from genflow.classify.loading import ClassifierCheckpointError, member_dirs
from genflow.config import build_component
from genflow.distill.base import DistillationError, Perturbation
from genflow.distill.batch_ensemble import BatchEnsemble
from genflow.errors import ConfigError
from genflow.metrics.calibration import check_labels
from genflow.objectives.base import OBJECTIVES, Objective
from genflow.objectives.classification import crop_offsets, image_label_batch, random_crop
from genflow.random import require_generator
from genflow.train.held import HeldNetwork, as_held_network
from genflow.validation import check_instance

__all__ = ["EnsembleDistillation", "load_teachers", "kd_loss"]

PERTURBATION_PREFIX = "perturbation."


def load_teachers(path: str | os.PathLike[str]) -> list[HeldNetwork]:
    """The members of an ensemble run folder (``member-<i>/``), each held frozen by reference.

    Raises:
        ClassifierCheckpointError: no ``member-<i>`` folders at ``path``, or a member that is not a classifier.
    """
    folders = member_dirs(path)
    if not folders:
        raise ClassifierCheckpointError(
            f"teachers must be an ensemble run folder with member-0/, member-1/, ... (genflow train "
            f"digits_ensemble); {path} has none"
        )
    teachers = [HeldNetwork.from_checkpoint(folder) for folder in folders]
    for folder, teacher in zip(folders, teachers, strict=True):
        if not isinstance(teacher.module, Classifier):
            raise ClassifierCheckpointError(f"{folder} holds a {type(teacher.module).__name__}, not a classifier")
    return teachers


def kd_loss(student_logits: Tensor, teacher_probs: Tensor, tau: float) -> Tensor:
    """``tau^2 KL(teacher_probs || softmax(student_logits / tau))``, summed over classes, averaged over the rest.

    Shapes:
        student_logits, teacher_probs: ``(..., C)``.
    """
    log_q = torch.log_softmax(student_logits / tau, dim=-1)
    terms = torch.xlogy(teacher_probs, teacher_probs) - teacher_probs * log_q  # 0 log 0 = 0
    return tau**2 * terms.sum(-1).mean()


@OBJECTIVES.register("ensemble_distillation")
class EnsembleDistillation(Objective):
    """Distillation of frozen teachers into the trained model (see the module docstring).

    Batches carry ``x`` (images in ``[0, 1]``) and ``label``. The perturbation runs only in
    :meth:`loss` (training); :meth:`metrics` scores the student on the unperturbed images.

    Args:
        teachers: An ensemble run folder (``member-<i>/``; loaded by :func:`load_teachers`) or held networks
            (or their configs). The config records them by reference, whichever was given.
        perturbation: A :class:`~genflow.distill.Perturbation`, its config or registered name.
        alpha: Weight of the distillation term, in ``[0, 1]``.
        temperature: ``tau > 0``.
        pad: Random-crop padding of ``x`` in pixels (0: none), as in ``cross_entropy``.

    Raises:
        ConfigError: ``alpha`` outside ``[0, 1]``, a non-positive ``temperature``, a negative ``pad``.
        ClassifierCheckpointError: a teacher folder with no ensemble in it.
        DistillationError: teachers that disagree on their class count; (in :meth:`loss`) a student with
            another class count than the teachers, or a BatchEnsemble with another member count.
    """

    fields: ClassVar[tuple[str, ...]] = ("x", "label")
    config_components: ClassVar[dict[str, str]] = {"teachers": "held_network", "perturbation": "perturbation"}

    def __init__(
        self,
        teachers: str | os.PathLike[str] | Sequence[HeldNetwork | dict[str, Any]],
        perturbation: Perturbation | dict[str, Any] | str = "none",
        alpha: float = 0.9,
        temperature: float = 4.0,
        pad: int = 1,
    ) -> None:
        if isinstance(teachers, (str, os.PathLike)):
            teachers = load_teachers(teachers)
            self._config_args["teachers"] = teachers  # recorded by reference (path + sha256), not by folder name
        if not isinstance(teachers, Sequence) or not teachers:
            raise ConfigError(f"teachers must be an ensemble run folder or a non-empty list; got {teachers!r}")
        self.teachers = [as_held_network(t, f"teachers[{i}]") for i, t in enumerate(teachers)]
        classes = [getattr(t.module, "num_classes", None) for t in self.teachers]
        if None in classes or len(set(classes)) != 1:
            raise DistillationError(f"every teacher must be a classifier with the same num_classes; got {classes}")
        self.num_classes = int(classes[0])
        self.perturbation = check_instance(build_component("perturbation", perturbation, "perturbation"),
                                           Perturbation, "perturbation")  # fmt: skip
        self._config_args["perturbation"] = self.perturbation  # a name is recorded with its full arguments
        if not 0.0 <= float(alpha) <= 1.0:
            raise ConfigError(f"alpha must be in [0, 1]; got {alpha}")
        if not float(temperature) > 0.0:
            raise ConfigError(f"temperature must be > 0; got {temperature}")
        if not isinstance(pad, int) or isinstance(pad, bool) or pad < 0:
            raise ConfigError(f"pad must be an int >= 0; got {pad!r}")
        self.alpha, self.temperature, self.pad = float(alpha), float(temperature), pad

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> EnsembleDistillation:
        """Rebuild from :meth:`to_config` (held networks, hashes checked) or from a recipe naming a run folder."""
        config = dict(config) if isinstance(config, dict) else config
        if isinstance(config, dict) and isinstance(config.get("teachers"), (str, os.PathLike)):
            config["teachers"] = load_teachers(config["teachers"])
        return super().from_config(config)

    def draw(
        self, n: int, shapes: Mapping[str, tuple[int, ...]], generator: torch.Generator, *, dtype: torch.dtype,
        device: Any,
    ) -> dict[str, Tensor]:  # fmt: skip
        """Crop ``offsets`` ``(n, 2)`` and the perturbation's draws (keys prefixed ``perturbation.``)."""
        generator = require_generator(generator, f"{type(self).__name__}.draw")
        offsets = crop_offsets(n, self.pad, generator, device)
        inner = self.perturbation.draw(n, tuple(shapes["x"]), len(self.teachers), self.num_classes, generator,
                                       dtype=dtype, device=device)  # fmt: skip
        return {"offsets": offsets, **{PERTURBATION_PREFIX + k: v for k, v in inner.items()}}

    def _batch(self, batch: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
        return image_label_batch(batch, self.fields, "ensemble_distillation")

    def _student(self, model: nn.Module) -> tuple[bool, int]:
        inner = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
        classes = getattr(inner, "num_classes", None)
        if classes != self.num_classes:
            raise DistillationError(f"the student has num_classes={classes}; the teachers have {self.num_classes}")
        if isinstance(inner, BatchEnsemble):
            if inner.members != len(self.teachers):
                raise DistillationError(f"a BatchEnsemble student matches member i to teacher i: it needs "
                                        f"{len(self.teachers)} members; got {inner.members}")  # fmt: skip
            return True, inner.members
        return False, 1

    def teacher_probs(self, x: Tensor, per_member: bool) -> Tensor:
        """The teachers' tempered probabilities at ``x``: ``(M, b, C)`` per member, else their mean ``(b, C)``."""
        with torch.no_grad():
            probs = torch.stack([torch.softmax(t(x) / self.temperature, dim=-1) for t in self.teachers])
        return probs if per_member else probs.mean(0)

    def loss(self, model: nn.Module, batch: Mapping[str, Tensor], draws: Mapping[str, Tensor]) -> Tensor:
        """The distillation loss on the batch (cropped at ``draws["offsets"]``, then perturbed).

        Raises:
            ShapeError: a missing field or mismatched shapes. LabelError: a label out of range.
            DistillationError: a student that does not fit the teachers.
        """
        x, labels = self._batch(batch)
        per_member, members = self._student(model)
        x = random_crop(x, draws["offsets"], self.pad)
        inner = {k[len(PERTURBATION_PREFIX) :]: v for k, v in draws.items() if k.startswith(PERTURBATION_PREFIX)}
        x_pert = self.perturbation.perturb(x, self.teachers, inner)
        logits = model(x, per_member=True) if per_member else model(x)  # (M, b, C) or (b, C)
        check_labels(labels, x.shape[0], self.num_classes)
        ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.repeat(members))
        if self.alpha == 0.0:
            return ce
        moved = self.perturbation.moves_inputs
        logits_pert = logits if not moved else (model(x_pert, per_member=True) if per_member else model(x_pert))
        kd = kd_loss(logits_pert, self.teacher_probs(x_pert, per_member), self.temperature)
        return (1.0 - self.alpha) * ce + self.alpha * kd

    def metrics(self, model: nn.Module, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Per-example ``accuracy`` and ``nll`` of the student's (mean) prediction on the unperturbed images."""
        x, labels = self._batch(batch)
        logits = model(x)
        check_labels(labels, logits.shape[0], logits.shape[-1])
        return {"accuracy": (logits.argmax(1) == labels).to(logits.dtype),
                "nll": F.cross_entropy(logits, labels, reduction="none")}  # fmt: skip
