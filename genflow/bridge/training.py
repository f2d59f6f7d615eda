"""Training diffusion bridge networks with the generic :class:`~genflow.train.Trainer`, and loading them.

:func:`bridge_pairs` runs the frozen members once over the training images and keeps,
per image, the source member's raw logits, the target ensemble's log-probabilities
and the source's early feature map (the bridge's training data: the members never run
inside the training loop). :func:`train_dbn` trains one bridge on them
(:class:`~genflow.bridge.objectives.BridgeMatching`) and, optionally, distils it into
a one-step bridge (:func:`distillation_pairs`, :class:`~genflow.bridge.objectives.BridgeDistillation`).
A bridge run folder holds ``bridge-<j>/`` (multi-step) and ``bridge-<j>-one_step/``
runs, one pair per target ensemble; :func:`load_bridge_run` averages them.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from genflow.bridge.average import AveragedBridges
from genflow.bridge.base import BRIDGES
from genflow.bridge.dbn import DiffusionBridgeNetwork
from genflow.bridge.objectives import BridgeDistillation, BridgeMatching
from genflow.classify.base import Classifier
from genflow.classify.ensemble import combine_logits
from genflow.data import NamedTensorDataset
from genflow.errors import ComponentError, ConfigError
from genflow.objectives.classification import random_crop
from genflow.train.checkpoint import CheckpointError, load_checkpoint
from genflow.train.held import HeldNetwork, find_held_networks, restore_held_weights
from genflow.train.trainer import Trainer

__all__ = ["bridge_pairs", "with_crops", "distillation_pairs", "TrainedBridge", "train_dbn", "bridge_dir",
           "bridge_dirs", "load_bridge", "load_bridge_run", "BridgeCheckpointError"]  # fmt: skip

_BRIDGE = re.compile(r"bridge-(\d+)(-one_step)?")


class BridgeCheckpointError(CheckpointError):
    """A folder is not a bridge run, or a checkpoint does not hold a bridge."""


@torch.no_grad()
def bridge_pairs(
    source: Classifier, targets: Sequence[Classifier], images: Tensor, *, batch_size: int = 512
) -> NamedTensorDataset:
    """The bridge's training pairs of ``images``: fields ``source`` (the member's raw logits ``(N, K)``),
    ``target`` (the target ensemble's log mean probabilities ``(N, K)``) and ``cond`` (the member's feature map).

    Raises:
        ComponentError: a target member with another class count than the source.
    """
    for i, member in enumerate(targets):
        if member.num_classes != source.num_classes:
            raise ComponentError(f"targets[{i}] has {member.num_classes} classes; the source has "
                                 f"{source.num_classes}")  # fmt: skip
    logits, conds, ensemble = [], [], []
    for i in range(0, images.shape[0], batch_size):
        x = images[i : i + batch_size]
        z, h = source.eval().logits_and_features(x)
        logits.append(z)
        conds.append(h)
        ensemble.append(combine_logits(torch.stack([m.eval()(x) for m in targets])))
    return NamedTensorDataset(source=torch.cat(logits), target=torch.cat(ensemble), cond=torch.cat(conds))


@torch.no_grad()
def distillation_pairs(
    teacher: DiffusionBridgeNetwork, pairs: NamedTensorDataset, generator: torch.Generator, *, repeats: int = 1
) -> NamedTensorDataset:
    """Pairs for one-step distillation: ``repeats`` teacher samples per source (at the test temperature) as
    ``target``, with the same raw ``source`` logits and ``cond``."""
    fields = dict(zip(pairs.fields, pairs.tensors, strict=True))
    source, cond = fields["source"], fields["cond"]
    teacher = teacher.eval()
    samples = [teacher.sample(teacher.source_logits(source), cond, generator=generator) for _ in range(repeats)]
    return NamedTensorDataset(source=source.repeat(repeats, 1), target=torch.cat(samples),
                              cond=cond.repeat(repeats, *([1] * (cond.ndim - 1))))  # fmt: skip


def with_crops(images: Tensor, copies: int, seed: int, pad: int = 1) -> Tensor:
    """``images`` followed by ``copies`` randomly cropped copies (zero padding ``pad``, offsets from ``seed``)."""
    if not isinstance(copies, int) or isinstance(copies, bool) or copies < 0:
        raise ConfigError(f"crop_copies must be an int >= 0; got {copies!r}")
    generator = torch.Generator().manual_seed(int(seed))
    crops = [random_crop(images, torch.randint(0, 2 * pad + 1, (len(images), 2), generator=generator), pad)
             for _ in range(copies)]  # fmt: skip
    return torch.cat([images, *crops])


@dataclass
class TrainedBridge:
    """What :func:`train_dbn` returns: the multi-step bridge, its one-step student (or None), the wall times
    of training and distillation, and the logged training records."""

    bridge: DiffusionBridgeNetwork
    one_step: DiffusionBridgeNetwork | None
    seconds: list[float] = field(default_factory=list)
    histories: list[list[dict[str, float]]] = field(default_factory=list)


def bridge_dir(run: str | os.PathLike[str], index: int, one_step: bool = False) -> Path:
    """``run/bridge-<index>`` (multi-step) or ``run/bridge-<index>-one_step``."""
    return Path(run) / f"bridge-{index}{'-one_step' if one_step else ''}"


def bridge_dirs(run: str | os.PathLike[str], one_step: bool = False) -> list[Path]:
    """The ``bridge-<j>`` (or ``bridge-<j>-one_step``) folders of a bridge run, in order of ``j``."""
    found = []
    for path in Path(run).glob("bridge-*"):
        match = _BRIDGE.fullmatch(path.name)
        if path.is_dir() and match and bool(match.group(2)) == one_step:
            found.append((int(match.group(1)), path))
    return [p for _, p in sorted(found)]


def _fit(model: DiffusionBridgeNetwork, objective: Any, data: NamedTensorDataset, settings: Mapping[str, Any],
         out_dir: Path | None, seed: int, progress: bool) -> tuple[DiffusionBridgeNetwork, float, list]:  # fmt: skip
    run = Trainer(model, objective, out_dir=out_dir, seed=seed, progress=progress, **dict(settings))
    start = time.perf_counter()
    result = run.fit(data)
    trained = (run.ema if run.ema is not None else model).eval()
    return trained, time.perf_counter() - start, result.history


def train_dbn(
    source: Classifier | HeldNetwork,
    targets: Sequence[Classifier],
    images: Tensor,
    *,
    bridge: Mapping[str, Any] | None = None,
    trainer: Mapping[str, Any] | None = None,
    objective: BridgeMatching | None = None,
    distill: Mapping[str, Any] | None = None,
    distill_repeats: int = 2,
    crop_copies: int = 0,
    seed: int = 0,
    out_dir: str | os.PathLike[str] | None = None,
    index: int = 0,
    progress: bool = False,
) -> TrainedBridge:
    """Train a DBN from ``source`` toward the ensemble of ``targets`` on ``images``, then (``distill`` given)
    its one-step student, initialised from it.

    Args:
        source: The source member (a classifier held by value, or a :class:`HeldNetwork`, e.g. by reference).
        targets: The target ensemble's members (usually including the source).
        images: Training inputs (no labels needed).
        bridge: Further :class:`DiffusionBridgeNetwork` arguments (``steps``, ``widths``, ``process``, ...).
        trainer: :class:`~genflow.train.Trainer` arguments of the bridge's training.
        objective: The bridge's objective (default :class:`BridgeMatching` with random temperatures).
        distill: Trainer arguments of the distillation (None: no one-step student).
        distill_repeats: Teacher samples per image for distillation.
        crop_copies: Randomly cropped copies of the images added to the training inputs (1-pixel padding, as
            the members' augmentation; drawn from ``seed``): more inputs on which the member and the ensemble
            disagree.
        seed: Seed of the bridge network's initial weights and of both Trainers.
        out_dir: Bridge run folder (``bridge-<index>/`` and ``bridge-<index>-one_step/`` inside); None: nothing on disk.
        index: The bridge's index in the run folder.
        progress: Progress bars.
    """
    config = dict(bridge or {})
    if "source" in config:
        raise ConfigError("bridge arguments must not name the source (pass it as source=)")
    held = source.module if isinstance(source, HeldNetwork) else source
    pairs = bridge_pairs(held, targets, with_crops(images, crop_copies, seed))
    with torch.random.fork_rng(devices=[]):
        torch.random.default_generator.manual_seed(int(seed))
        model = DiffusionBridgeNetwork(source, **config)
    folder = None if out_dir is None else bridge_dir(out_dir, index)
    teacher, seconds, history = _fit(model, objective or BridgeMatching(), pairs, trainer or {}, folder, seed, progress)
    result = TrainedBridge(teacher, None, [seconds], [history])
    if distill is None:
        return result
    generator = torch.Generator().manual_seed(int(seed) + 1)
    pairs_1 = distillation_pairs(teacher, pairs, generator, repeats=distill_repeats)
    student = DiffusionBridgeNetwork(teacher.source, **{**config, "steps": 1})
    student.network.load_state_dict(teacher.network.state_dict())
    folder = None if out_dir is None else bridge_dir(out_dir, index, one_step=True)
    student, seconds, history = _fit(student, BridgeDistillation(), pairs_1, distill, folder, seed, progress)
    result.one_step = student
    result.seconds.append(seconds)
    result.histories.append(history)
    return result


def load_bridge(path: str | os.PathLike[str], *, ema: bool = True) -> DiffusionBridgeNetwork:
    """The bridge of a checkpoint or run folder (its latest checkpoint), in eval mode.

    Raises:
        BridgeCheckpointError: the checkpoint does not hold a registered bridge.
    """
    ckpt = load_checkpoint(path)
    config = ckpt.state.get("model_config")
    name = config.get("name") if isinstance(config, dict) else None
    if name not in BRIDGES:
        raise BridgeCheckpointError(f"{path} does not hold a bridge: expected a model_config naming one of "
                                    f"{', '.join(BRIDGES.names())}; got {name!r}")  # fmt: skip
    model = BRIDGES.from_config(config)
    restore_held_weights(find_held_networks(model=model), ckpt, str(path))
    model.load_state_dict(ckpt.ema if ema and ckpt.ema else ckpt.model)
    return model.eval()


def load_bridge_run(path: str | os.PathLike[str], *, one_step: bool = True) -> AveragedBridges:
    """The average of a bridge run's bridges: the one-step students (default) or the multi-step bridges.

    Raises:
        BridgeCheckpointError: no ``bridge-<j>`` (or ``bridge-<j>-one_step``) folders.
    """
    folders = bridge_dirs(path, one_step)
    if not folders:
        kind = "bridge-<j>-one_step" if one_step else "bridge-<j>"
        raise BridgeCheckpointError(f"{path} is not a bridge run: expected {kind}/ folders")
    bridges = [load_bridge(folder) for folder in folders]
    shared = bridges[0].source
    for bridge in bridges[1:]:  # one member pass serves every bridge
        bridge.source = shared if bridge.source.to_config() == shared.to_config() else bridge.source
    return AveragedBridges(bridges).eval()
