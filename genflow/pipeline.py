"""From a recipe to a trained model and back: the Python side of ``genflow train/sample/evaluate``.

* :func:`build` resolves a recipe's components through their registries;
* :func:`train` runs the :class:`~genflow.train.Trainer` (resuming from ``out_dir``);
* :func:`load_trained` rebuilds process and model (EMA weights) from a checkpoint;
* :func:`sample_with` draws samples with a solver named as in a recipe's ``sample.solvers``.
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from torch.utils.data import TensorDataset

from genflow.data import DATASET_LOADERS, load_dataset
from genflow.errors import ConfigError
from genflow.io import write_text_atomic
from genflow.model.base import MODELS, ScoreModel
from genflow.objectives.base import OBJECTIVES, Objective
from genflow.process.base import PROCESSES
from genflow.process.gaussian import GaussianProcess
from genflow.recipe import Recipe
from genflow.sampling import SampleOutput, Sampler
from genflow.solver.base import SOLVERS
from genflow.train.checkpoint import load_checkpoint
from genflow.train.held import find_held_networks, restore_held_weights
from genflow.train.resume import load_weights
from genflow.train.trainer import Trainer

__all__ = ["Components", "build", "train", "load_trained", "sample_with", "solver_label", "run_recipe"]

RECIPE_FILE = "recipe.yaml"


def run_recipe(path: str | Path) -> dict[str, Any] | None:
    """The resolved recipe saved beside a run's checkpoints (``path`` = run or step folder), if any."""
    path = Path(path)
    for folder in (path, path.parent):
        if (folder / RECIPE_FILE).is_file():
            return yaml.safe_load((folder / RECIPE_FILE).read_text())
    return None


@dataclass
class Components:
    """What a recipe builds."""

    dataset: Any
    process: GaussianProcess
    model: ScoreModel
    objective: Objective


def _objective(config: dict[str, Any], process_config: dict[str, Any]) -> Objective:
    config = dict(config)
    accepts_process = "process" in inspect.signature(OBJECTIVES.get(config["name"]).__init__).parameters
    if accepts_process and "process" not in config:
        config["process"] = process_config  # the objective trains on the recipe's process
    return OBJECTIVES.from_config(config)


def _seeded_model(config: dict[str, Any], seed: int) -> ScoreModel:
    with torch.random.fork_rng(devices=[]):  # seeded initialisation without touching the caller's global RNG
        torch.random.default_generator.manual_seed(seed)  # CPU only: models are built on the CPU
        return MODELS.from_config(config)


def _dataset(data: dict[str, Any], seed: int) -> Any:
    """Load the recipe's data: ``{name: loader, **arguments}`` or ``{name: loader, args: {...}}`` (needed when
    the loader has an argument called ``name``, as toy2d does). Loaders that draw get a generator seeded from
    the recipe."""
    data = dict(data)
    name = data.pop("name")
    data = dict(data.pop("args")) if "args" in data else data
    loader = DATASET_LOADERS.get(name)
    if loader is not None and "generator" in inspect.signature(loader).parameters:
        data.setdefault("generator", torch.Generator().manual_seed(seed))
    dataset = load_dataset(name, **data)
    return TensorDataset(dataset) if isinstance(dataset, torch.Tensor) else dataset


def build(recipe: Recipe) -> Components:
    """Resolve the recipe's data, process, model and objective (no training)."""
    config = recipe.config
    process = PROCESSES.from_config(config["process"])
    if not isinstance(process, GaussianProcess):
        raise ConfigError(f"{recipe.source}: process must be a Gaussian process; got {type(process).__name__}")
    return Components(
        dataset=_dataset(config["data"], int(config.get("seed", 0))),
        process=process,
        model=_seeded_model(config["model"], int(config.get("seed", 0))),
        objective=_objective(config["objective"], config["process"]),
    )


def train(recipe: Recipe, *, out_dir: str | Path | None = None, progress: bool = True, resume: bool = True) -> Trainer:
    """Train the recipe's model; checkpoints and ``metrics.jsonl`` go to ``out_dir`` (default the recipe's)."""
    parts = build(recipe)
    out = Path(out_dir if out_dir is not None else recipe.config.get("out_dir", "runs/train"))
    if int(os.environ.get("RANK", "0")) == 0:  # the resolved recipe beside the checkpoints (sample/evaluate read it)
        write_text_atomic(out / RECIPE_FILE, yaml.safe_dump(recipe.config, sort_keys=False))
    trainer = Trainer(
        parts.model,
        parts.objective,
        out_dir=out,
        seed=int(recipe.config.get("seed", 0)),
        progress=progress,
        **recipe.config["trainer"],
    )
    trainer.fit(parts.dataset, resume=resume)
    return trainer


def load_trained(path: str | Path, *, ema: bool = True) -> tuple[GaussianProcess, ScoreModel]:
    """Process and model (EMA weights when present) of a checkpoint folder or run folder.

    Networks the model holds (:class:`~genflow.train.held.HeldNetwork`) are restored too: by reference from
    their source checkpoint (its hash checked), by value from this checkpoint.

    Raises:
        CheckpointError: no checkpoint at ``path``; ``HeldNetworkError`` for a changed held network.
        ConfigError: the checkpoint records no model or process config, or its weights do not fit the model.
    """
    ckpt = load_checkpoint(path)
    model_config, process_config = ckpt.state.get("model_config"), ckpt.state.get("process_config")
    if model_config is None or process_config is None:
        raise ConfigError(
            f"{path}: the checkpoint does not record its model and process configs; rebuild them in Python"
        )
    process = PROCESSES.from_config(process_config)
    model = MODELS.from_config(model_config)  # held networks by reference are reloaded here (hash checked)
    load_weights(model, ckpt.ema if ema and ckpt.ema else ckpt.model, f"checkpoint {path}")
    restore_held_weights(find_held_networks(model=model), ckpt, f"checkpoint {path}")  # held by value
    return process, model.eval()


def solver_label(spec: dict[str, Any]) -> str:
    """A short name for a solver spec: ``dpm_solver_pp(order=2)``."""
    args = ", ".join(f"{k}={v}" for k, v in spec.items() if k not in ("name", "steps"))
    return f"{spec['name']}({args})" if args else spec["name"]


def sample_with(
    process: GaussianProcess,
    model: ScoreModel,
    spec: dict[str, Any],
    n: int,
    *,
    seed: int = 0,
    batch_size: int | None = None,
) -> SampleOutput:
    """Draw ``n`` samples with the solver ``spec`` = ``{name, steps, **solver arguments}``."""
    spec = dict(spec)
    name, steps = spec.pop("name"), int(spec.pop("steps"))
    event_shape = _event_shape(model)
    sampler = Sampler(process, model, SOLVERS.create(name, **spec))
    return sampler.sample(
        (n, *event_shape), steps, generator=torch.Generator().manual_seed(seed), batch_size=batch_size
    )


def _event_shape(model: ScoreModel) -> tuple[int, ...]:
    shape = getattr(model, "event_shape", None)
    if shape is None:
        raise ConfigError(f"{type(model).__name__} does not declare event_shape; pass the sample shape yourself")
    return tuple(shape)
