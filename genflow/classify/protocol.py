"""The digits uncertainty protocol: the setting every ensemble, bridge and distillation result reports on.

Members: the ``digits_ensemble`` recipe (a CIFAR-style ResNet-8 of width 16 on 8x8
digits, trained for 300 steps of batch 64 with AdamW at lr 3e-3, cosine schedule,
random crops with 1-pixel padding, on a fixed subset of the first 50 images of
each digit of the train split). Evaluation: the fixed validation split (176
images; temperature fitting), the clean test split (368) and the shifted set:
``digits_corrupted`` of the test split for every kind and severity (12 x 368
images, pooled). Protocol seed ``s`` trains members from seeds ``1000 s, 1000 s + 1, ...``;
the reported seeds are 0, 1, 2.

Why this setting: with few training images and short training the members fit
the data in different ways (they are diverse) and each is over-confident off its
training data, which is where deep ensembles earn their cost; on the full train
split members agree and the ensemble gain on the clean test split shrinks
(docs/benchmarks/ensembles.md).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from genflow.classify.ensemble import Ensemble
from genflow.classify.training import TrainedMembers, recipe_members
from genflow.data import CORRUPTIONS, SEVERITIES, ImageTensorDataset, digits_corrupted, load_digits_split
from genflow.recipe import load_recipe

__all__ = ["PROTOCOL_RECIPE", "PROTOCOL_SEEDS", "ProtocolData", "ProtocolResult", "protocol_data", "digits_protocol"]

PROTOCOL_RECIPE = "digits_ensemble"
PROTOCOL_SEEDS: tuple[int, ...] = (0, 1, 2)


@dataclass(frozen=True)
class ProtocolData:
    """The protocol's evaluation data (pixels in ``[0, 1]``).

    Attributes:
        val: The validation split (temperature fitting).
        test: The clean test split.
        shifted: ``"<kind>-<severity>"`` -> the corrupted test split, for every kind and severity.
    """

    val: ImageTensorDataset
    test: ImageTensorDataset
    shifted: dict[str, ImageTensorDataset]

    def shifted_pooled(self) -> ImageTensorDataset:
        """All shifted sets in one dataset (kinds and severities in order)."""
        sets = list(self.shifted.values())
        images = torch.cat([s.images for s in sets])
        return ImageTensorDataset(images, torch.cat([s.labels for s in sets]), "classification", self.test.classes)


@functools.lru_cache(maxsize=4)
def protocol_data(size: int = 8) -> ProtocolData:
    """Validation, test and shifted test digits at ``size`` (8, 16 or 32), identical on every call."""
    split = functools.partial(load_digits_split, size=size, value_range="classification")
    shifted = {f"{k}-{s}": digits_corrupted(k, s, size=size) for k in CORRUPTIONS for s in SEVERITIES}
    return ProtocolData(split("val"), split("test"), shifted)


@dataclass
class ProtocolResult:
    """One protocol seed: the trained members and what the reports need.

    Attributes:
        seed: The protocol seed.
        ensemble: The trained members as an :class:`Ensemble` (``ensemble.subset(k)`` for smaller ones).
        seconds: Training wall time per member.
        data: The evaluation data.
        config: The resolved recipe the members were trained from.
    """

    seed: int
    ensemble: Ensemble
    seconds: list[float]
    data: ProtocolData
    config: dict[str, Any]


def digits_protocol(
    seed: int = 0,
    *,
    members: int = 4,
    out_dir: str | os.PathLike[str] | None = None,
    overrides: Sequence[str] = (),
    progress: bool = False,
) -> ProtocolResult:
    """Train the protocol's members for ``seed`` (the ``digits_ensemble`` recipe) and load its data.

    Args:
        seed: Protocol seed (members from seeds ``1000 seed + i``).
        members: Ensemble size.
        out_dir: Run folder for the members' checkpoints (``member-<i>/``); None keeps nothing on disk.
        overrides: Further recipe overrides (``trainer.steps=100``), e.g. for a quick smoke run.
        progress: Progress bars.

    Returns:
        :class:`ProtocolResult`.
    """
    recipe = load_recipe(PROTOCOL_RECIPE, [f"seed={1000 * int(seed)}", f"ensemble.members={members}", *overrides])
    trained: TrainedMembers = recipe_members(recipe, out_dir=out_dir, progress=progress)
    size = int(recipe.config["model"]["image_size"])
    return ProtocolResult(int(seed), trained.ensemble, trained.seconds, protocol_data(size), recipe.config)
