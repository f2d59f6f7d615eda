"""Training classifiers and deep ensembles with the generic :class:`~genflow.train.Trainer`.

:func:`train_members` trains ``M`` members from ``M`` seeds (``seed, seed + 1, ...``:
the seed sets both the initial weights and the Trainer's data order and
augmentation draws), each into ``out_dir/member-<i>/``. :func:`train_recipe` does the
same from a classifier recipe (``genflow/recipes/digits_classifier.yaml``,
``digits_ensemble.yaml``): sections ``data``, ``validation`` (data for the
validation metrics), ``model`` (a ``CLASSIFIERS`` config), ``objective``, ``trainer``,
``ensemble: {members: M}`` and the keys ``seed`` and ``out_dir``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from torch.utils.data import Dataset

from genflow.classify.base import CLASSIFIERS, Classifier, check_positive_int
from genflow.classify.ensemble import Ensemble
from genflow.classify.loading import member_dir
from genflow.data import ImageTensorDataset, load_dataset
from genflow.errors import ConfigError
from genflow.io import write_text_atomic
from genflow.objectives.base import OBJECTIVES, Objective
from genflow.recipe import Recipe
from genflow.train.trainer import Trainer

__all__ = ["TrainedMembers", "build_classifier", "classification_data", "stratified_subset", "train_members",
           "recipe_members", "train_recipe"]  # fmt: skip

RECIPE_FILE = "recipe.yaml"


def build_classifier(config: Mapping[str, Any], seed: int) -> Classifier:
    """Build a classifier from its config with initial weights drawn from ``seed`` (the caller's RNG untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.random.default_generator.manual_seed(int(seed))  # CPU only: models are built on the CPU
        return CLASSIFIERS.from_config(dict(config))


def stratified_subset(dataset: ImageTensorDataset, per_class: int) -> ImageTensorDataset:
    """The first ``per_class`` examples of every class, in the dataset's order (a fixed subset, no randomness).

    Raises:
        ConfigError: a class has fewer than ``per_class`` examples.
    """
    check_positive_int("per_class", per_class)
    chosen = []
    for k in range(len(dataset.classes)):
        index = torch.nonzero(dataset.labels == k).flatten()
        if index.numel() < per_class:
            raise ConfigError(f"per_class={per_class} but class {k} has only {index.numel()} examples")
        chosen.append(index[:per_class])
    index = torch.cat(chosen).sort().values
    return ImageTensorDataset(dataset.images[index], dataset.labels[index], dataset.value_range, dataset.classes)


def classification_data(spec: Mapping[str, Any]) -> ImageTensorDataset:
    """Load ``{name: loader, **arguments, per_class: k (optional)}`` through :func:`genflow.data.load_dataset`."""
    spec = dict(spec)
    name, per_class = spec.pop("name"), spec.pop("per_class", None)
    dataset = load_dataset(name, **spec)
    return stratified_subset(dataset, per_class) if per_class is not None else dataset


@dataclass
class TrainedMembers:
    """What :func:`train_members` returns.

    Attributes:
        ensemble: The members (EMA weights when the Trainer keeps an EMA), in eval mode.
        seconds: Training wall time of each member.
        histories: Each member's logged training records (loss, grad norm, lr, ...).
        validations: Each member's validation records (``val_accuracy``, ``val_nll``; empty without validation).
    """

    ensemble: Ensemble
    seconds: list[float] = field(default_factory=list)
    histories: list[list[dict[str, float]]] = field(default_factory=list)
    validations: list[list[dict[str, float]]] = field(default_factory=list)


def train_members(
    model: Mapping[str, Any],
    objective: Objective,
    train: Dataset,
    *,
    members: int = 4,
    seed: int = 0,
    out_dir: str | os.PathLike[str] | None = None,
    validation: Dataset | None = None,
    trainer: Mapping[str, Any] | None = None,
    progress: bool = False,
    member_folders: bool = True,
) -> TrainedMembers:
    """Train ``members`` classifiers from seeds ``seed, seed + 1, ...`` (into ``out_dir/member-<i>/``).

    Args:
        model: A ``CLASSIFIERS`` config (``{"name": "cifar_resnet", ...}``).
        objective: The training objective (e.g. :class:`~genflow.objectives.classification.CrossEntropy`).
        train: Training data (items ``(x, label)``).
        members: Ensemble size ``M``.
        seed: Seed of member 0.
        out_dir: Run folder (None: nothing on disk). Existing members resume from their checkpoints.
        validation: Data for the objective's validation metrics (logged as ``val_*``).
        trainer: Further :class:`~genflow.train.Trainer` arguments (steps, batch_size, lr, ...).
        progress: Show a progress bar per member.
        member_folders: Write member ``i`` to ``out_dir/member-<i>/``; False (one member only) writes
            its checkpoints straight into ``out_dir``.

    Returns:
        :class:`TrainedMembers`.
    """
    check_positive_int("members", members)
    if not member_folders and members != 1:
        raise ConfigError(f"member_folders=False keeps one run in out_dir, so members must be 1; got {members}")
    settings = dict(trainer or {})
    trained, seconds, histories, validations = [], [], [], []
    for i in range(members):
        classifier = build_classifier(model, seed + i)
        folder = None if out_dir is None else member_dir(out_dir, i) if member_folders else Path(out_dir)
        run = Trainer(
            classifier, objective, out_dir=folder, seed=seed + i,
            validation=validation, progress=progress, **settings,
        )  # fmt: skip
        start = time.perf_counter()
        result = run.fit(train)
        seconds.append(time.perf_counter() - start)
        histories.append(result.history)
        validations.append(result.validation)
        trained.append((run.ema if run.ema is not None else classifier).eval())
    return TrainedMembers(Ensemble(trained), seconds, histories, validations)


def recipe_members(
    recipe: Recipe, *, out_dir: str | os.PathLike[str] | None = None, progress: bool = True
) -> TrainedMembers:
    """Train a classifier recipe's members (``out_dir`` None: nothing on disk); see :func:`train_recipe`.

    Raises:
        ConfigError: a missing section, or an objective that does not read labels.
    """
    config = recipe.config
    missing = [s for s in ("data", "model", "objective", "trainer") if not isinstance(config.get(s), dict)]
    if missing:
        raise ConfigError(f"{recipe.source}: a classifier recipe needs the section(s) {', '.join(missing)}")
    objective = OBJECTIVES.from_config(config["objective"])
    if "label" not in getattr(objective, "fields", ()):
        raise ConfigError(f"{recipe.source}: objective {config['objective'].get('name')!r} does not read labels")
    validation = classification_data(config["validation"]) if config.get("validation") else None
    ensemble = config.get("ensemble")
    return train_members(
        config["model"], objective, classification_data(config["data"]),
        members=int(ensemble["members"]) if ensemble else 1, seed=int(config.get("seed", 0)), out_dir=out_dir,
        validation=validation, trainer=config["trainer"], progress=progress, member_folders=bool(ensemble),
    )  # fmt: skip


def train_recipe(
    recipe: Recipe, *, out_dir: str | os.PathLike[str] | None = None, progress: bool = True
) -> TrainedMembers:
    """Train a classifier recipe into its run folder; the resolved recipe goes to ``out_dir/recipe.yaml``.

    With an ``ensemble: {members: M}`` section the members go to ``out_dir/member-<i>/`` (load them with
    :func:`~genflow.classify.load_ensemble`); without one, a single classifier's checkpoints go straight
    into ``out_dir`` (load it with :func:`~genflow.classify.load_classifier`). The recipe file is written
    once training has finished, so a refused or failed run leaves an earlier one's record alone.

    Args:
        recipe: A classifier recipe (:func:`~genflow.recipe.load_recipe`).
        out_dir: Run folder; default the recipe's ``out_dir``.
        progress: Progress bars.
    """
    out = Path(out_dir if out_dir is not None else recipe.config.get("out_dir", "runs/classifier"))
    result = recipe_members(recipe, out_dir=out, progress=progress)
    if int(os.environ.get("RANK", "0")) == 0:
        write_text_atomic(out / RECIPE_FILE, yaml.safe_dump(recipe.config, sort_keys=False))
    return result
