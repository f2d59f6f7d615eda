"""Bridge recipes and runs: ``genflow train dbn_digits`` and ``genflow evaluate`` on a bridge run.

A bridge recipe (``genflow/recipes/dbn_digits.yaml``) names a trained ensemble run and
the bridges to train from one of its members:

* ``bridge: {ensemble_run: PATH, source: i, targets: [[i, ...], ...], distill_repeats: r, crop_copies: c}``:
  the source member (held by reference: its checkpoint's path and SHA-256 go into every bridge checkpoint),
  one target ensemble per bridge, each containing the source, teacher samples per image for distillation
  and randomly cropped copies of the training images (:func:`~genflow.bridge.training.with_crops`);
* ``data`` (training images; no labels are read), ``model`` (the :class:`DiffusionBridgeNetwork` arguments
  other than the source), ``objective`` (``bridge_matching``), ``trainer`` and, for the one-step students,
  ``distill`` (Trainer arguments; leave it out to train multi-step bridges only); ``seed`` and ``out_dir``.

The run folder holds ``bridge-<j>/`` and ``bridge-<j>-one_step/``; :func:`evaluate_bridge_run` evaluates the
averaged one-step and multi-step bridges with the ensembles' table
(:func:`~genflow.classify.evaluate_classifier`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from genflow.bridge.objectives import BridgeMatching
from genflow.bridge.training import TrainedBridge, bridge_dirs, load_bridge_run, train_dbn
from genflow.classify.evaluate import ClassifierReport, evaluate_classifier
from genflow.classify.loading import load_ensemble, member_dir
from genflow.classify.training import classification_data
from genflow.errors import ConfigError
from genflow.io import write_text_atomic
from genflow.objectives.base import OBJECTIVES
from genflow.recipe import Recipe
from genflow.train.held import HeldNetwork

__all__ = ["BRIDGE_KEYS", "check_bridge_section", "train_bridge_recipe", "is_bridge_run", "evaluate_bridge_run"]

BRIDGE_KEYS = ("ensemble_run", "source", "targets", "distill_repeats", "crop_copies")


def check_bridge_section(section: Any, where: str = "bridge") -> None:
    """Check a recipe's ``bridge`` section (see the module docstring).

    Raises:
        ConfigError: not a mapping, unknown or missing keys, or targets that are not lists of member indices
            containing the source.
    """
    if not isinstance(section, dict):
        raise ConfigError(f"{where} must be a section {{ensemble_run, source, targets}}; got {section!r}")
    unknown, missing = set(section) - set(BRIDGE_KEYS), {"ensemble_run", "targets"} - set(section)
    if unknown or missing:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)} / missing keys {sorted(missing)}; accepted: "
                          f"{', '.join(BRIDGE_KEYS)}")  # fmt: skip
    source, targets = section.get("source", 0), section["targets"]
    if not isinstance(source, int) or isinstance(source, bool) or source < 0:
        raise ConfigError(f"{where}.source must be a member index (int >= 0); got {source!r}")
    ok = (
        isinstance(targets, list)
        and targets
        and all(
            isinstance(t, list) and t and all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in t)
            for t in targets
        )
    )
    if not ok:
        raise ConfigError(f"{where}.targets must be a non-empty list of lists of member indices; got {targets!r}")
    for j, target in enumerate(targets):
        if source not in target:
            raise ConfigError(f"{where}.targets[{j}] = {target} must contain the source member {source}")
    for key, lo in (("distill_repeats", 1), ("crop_copies", 0)):
        value = section.get(key, lo)
        if not isinstance(value, int) or isinstance(value, bool) or value < lo:
            raise ConfigError(f"{where}.{key} must be an int >= {lo}; got {value!r}")


def train_bridge_recipe(
    recipe: Recipe, *, out_dir: str | os.PathLike[str] | None = None, progress: bool = True
) -> list[TrainedBridge]:
    """Train a bridge recipe's bridges (and one-step students) into its run folder; the resolved recipe goes
    to ``out_dir/recipe.yaml`` once training has finished.

    Raises:
        ConfigError: a malformed ``bridge`` section, a member index the ensemble run lacks, or an objective
            other than ``bridge_matching``.
    """
    config = recipe.config
    check_bridge_section(config.get("bridge"), f"{recipe.source}: bridge")
    section = config["bridge"]
    run = Path(section["ensemble_run"])
    members = list(load_ensemble(run).members)
    source_index = section.get("source", 0)
    wanted = {source_index, *(i for target in section["targets"] for i in target)}
    if max(wanted) >= len(members):
        raise ConfigError(f"{recipe.source}: bridge member index {max(wanted)} but {run} has {len(members)} members")
    objective = OBJECTIVES.from_config(config["objective"])
    if not isinstance(objective, BridgeMatching):
        raise ConfigError(f"{recipe.source}: a bridge recipe trains with objective bridge_matching; got "
                          f"{config['objective'].get('name')!r}")  # fmt: skip
    source = HeldNetwork.from_checkpoint(member_dir(run, source_index))
    images = classification_data(config["data"]).images
    arguments = {k: v for k, v in config["model"].items() if k != "name"}
    out = Path(out_dir if out_dir is not None else config.get("out_dir", "runs/dbn_digits"))
    seed = int(config.get("seed", 0))
    results = [
        train_dbn(
            source,
            [members[i] for i in target],
            images,
            bridge=arguments,
            trainer=config["trainer"],
            objective=objective,
            distill=config.get("distill"),
            distill_repeats=section.get("distill_repeats", 2),
            crop_copies=section.get("crop_copies", 0),
            seed=seed + j,
            out_dir=out,
            index=j,
            progress=progress,
        )  # fmt: skip
        for j, target in enumerate(section["targets"])
    ]
    if int(os.environ.get("RANK", "0")) == 0:
        write_text_atomic(out / "recipe.yaml", yaml.safe_dump(config, sort_keys=False))
    return results


def is_bridge_run(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` holds ``bridge-<j>/`` runs."""
    return bool(bridge_dirs(path)) or bool(bridge_dirs(path, one_step=True))


def evaluate_bridge_run(
    path: str | os.PathLike[str], out_dir: str | os.PathLike[str] | None = None
) -> dict[str, ClassifierReport]:
    """:func:`~genflow.classify.evaluate_classifier` on a bridge run's averaged bridges: ``"multi_step"`` and
    ``"one_step"`` (those it has), each into ``out_dir/<kind>/`` (default ``RUN/eval``)."""
    out = Path(out_dir) if out_dir is not None else Path(path) / "eval"
    reports = {}
    for kind, one_step in (("multi_step", False), ("one_step", True)):
        if bridge_dirs(path, one_step):
            model = load_bridge_run(path, one_step=one_step)
            title = f"{Path(path).name} ({len(model)} bridge(s), {kind.replace('_', '-')})"
            reports[kind] = evaluate_classifier(model, out / kind, title=title)
    return reports
