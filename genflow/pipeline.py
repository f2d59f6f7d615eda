"""From a recipe to a trained model and back: the Python side of ``genflow train/sample/evaluate``.

* :func:`build` resolves a recipe's components through their registries;
* :func:`train` runs the :class:`~genflow.train.Trainer` (resuming from ``out_dir``);
* :func:`load_trained` rebuilds process and model (EMA weights) from a checkpoint;
* :func:`sample_with` draws samples with a solver named as in a recipe's ``sample.solvers``.

Everything a run needs is checked before anything is written: the recipe (its
schema, each component's arguments, ``init_from``), the output folder and, by the
Trainer, the checkpoint it resumes; only then is the resolved recipe written
(atomically) beside the checkpoints.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from torch.utils.data import TensorDataset

from genflow.data import DATASET_LOADERS
from genflow.errors import ConfigError, GenflowError
from genflow.io import write_text_atomic
from genflow.model.base import MODELS, ScoreModel
from genflow.objectives.base import OBJECTIVES, Objective
from genflow.outputs import check_writable_folder
from genflow.plugins import import_plugins
from genflow.process.base import PROCESSES
from genflow.process.gaussian import GaussianProcess
from genflow.recipe import Recipe, check_solver_spec, is_classifier_recipe
from genflow.runs import RECIPE_FILE, checkpoint_step, run_recipe
from genflow.sampling import SampleOutput, Sampler
from genflow.solver.base import SOLVERS, Solver
from genflow.train.checkpoint import load_checkpoint
from genflow.train.held import find_held_networks, restore_held_weights
from genflow.train.resume import load_weights
from genflow.train.trainer import Trainer

__all__ = [
    "Components",
    "build",
    "train",
    "load_trained",
    "sample_with",
    "solver_label",
    "solver_from",
    "run_recipe",
    "checkpoint_step",
]

@dataclass
class Components:
    """What a recipe builds."""

    dataset: Any
    process: GaussianProcess
    model: ScoreModel
    objective: Objective


def _section(name: str, source: str, make: Callable[[], Any]) -> Any:
    """Build one section; an error a component raises as a bare TypeError/ValueError names the section."""
    try:
        return make()
    except GenflowError:
        raise
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{source}: section {name!r}: {err}") from None


def _on_process(kind: str, registry: Any, config: dict[str, Any], process: GaussianProcess,
                process_config: dict[str, Any], build: Callable[[dict[str, Any]], Any]) -> Any:  # fmt: skip
    """Build a component that declares a ``process`` argument on the recipe's process (given, it must agree)."""
    config = dict(config)
    if registry.get(config["name"]).config_components.get("process") == "process" and "process" not in config:
        config["process"] = process_config  # the component declares it works on a process: the recipe's
    component = build(config)
    own = getattr(component, "process", None)
    if isinstance(own, GaussianProcess) and own.to_config() != process.to_config():
        raise ConfigError(
            f"{kind} {config['name']!r} works on the process {own.to_config()} but the recipe's process is "
            f"{process.to_config()}; make them agree"
        )
    return component


def _objective(config: dict[str, Any], process: GaussianProcess, process_config: dict[str, Any]) -> Objective:
    return _on_process("objective", OBJECTIVES, config, process, process_config, OBJECTIVES.from_config)


def _seeded_model(config: dict[str, Any], seed: int) -> ScoreModel:
    with torch.random.fork_rng(devices=[]):  # seeded initialisation without touching the caller's global RNG
        torch.random.default_generator.manual_seed(seed)  # CPU only: models are built on the CPU
        return MODELS.from_config(config)


def _model(config: dict[str, Any], process: GaussianProcess, process_config: dict[str, Any], seed: int) -> ScoreModel:
    return _on_process("model", MODELS, config, process, process_config, lambda c: _seeded_model(c, seed))


def _dataset(data: dict[str, Any], seed: int) -> Any:
    """Load the recipe's data: ``{name: loader, **arguments}`` or ``{name: loader, args: {...}}`` (needed when
    the loader has an argument called ``name``, as toy2d does). Loaders that declare ``takes_generator`` get a
    generator seeded from the recipe."""
    loader = DATASET_LOADERS.from_config(data)
    dataset = loader.load(torch.Generator().manual_seed(seed) if loader.takes_generator else None)
    return TensorDataset(dataset) if isinstance(dataset, torch.Tensor) else dataset


def build(recipe: Recipe) -> Components:
    """Import the recipe's plugins and resolve its data, process, model and objective (no training).

    Raises:
        ConfigError: a section its component refuses (UnknownArgumentError for an unknown argument).
    """
    config, source, seed = recipe.config, recipe.source, recipe.seed
    import_plugins(recipe.plugins)
    if is_classifier_recipe(config):
        raise ConfigError(
            f"{source}: model {config['model']['name']!r} is a classifier; train it with genflow.classify.train_recipe "
            "(genflow train does so)"
        )
    process = _section("process", source, lambda: PROCESSES.from_config(config["process"]))
    if not isinstance(process, GaussianProcess):
        raise ConfigError(f"{source}: process must be a Gaussian process; got {type(process).__name__}")
    return Components(
        dataset=_section("data", source, lambda: _dataset(config["data"], seed)),
        process=process,
        model=_section("model", source, lambda: _model(config["model"], process, config["process"], seed)),
        objective=_section("objective", source, lambda: _objective(config["objective"], process, config["process"])),
    )


def _trainer_settings(recipe: Recipe, tensorboard: bool | None) -> dict[str, Any]:
    """The Trainer's keyword arguments: the recipe's ``trainer`` section, ``--tensorboard`` and the run's info
    (recorded in every checkpoint's ``state.json`` under ``"run"``)."""
    settings = dict(recipe.config["trainer"])
    if tensorboard is not None:
        settings["tensorboard"] = tensorboard
    settings["run_info"] = {"data": recipe.config["data"], "init_from": recipe.config.get("init_from")}
    return settings


def train(
    recipe: Recipe,
    *,
    out_dir: str | Path | None = None,
    progress: bool = True,
    resume: bool = True,
    tensorboard: bool | None = None,
    parts: Components | None = None,
) -> Trainer:
    """Train the recipe's model; checkpoints and ``metrics.jsonl`` go to ``out_dir`` (default the recipe's).

    Everything is checked first; ``recipe.yaml`` is written (atomically) only once the Trainer has restored
    the run it resumes, so a refused or failed start leaves the run's recipe as it was.

    Args:
        tensorboard: Override the recipe's ``trainer.tensorboard``.
        parts: The recipe's components when the caller built them already (:func:`build`).

    Raises:
        ConfigError: an invalid recipe, ``init_from`` or ``out_dir``; the Trainer's own errors.
    """
    parts = build(recipe) if parts is None else parts
    init = recipe.config.get("init_from")
    out = Path(out_dir if out_dir is not None else recipe.config.get("out_dir", "runs/train"))
    settings = _trainer_settings(recipe, tensorboard)
    is_main = int(os.environ.get("RANK", "0")) == 0
    if is_main:
        check_writable_folder(out, "out_dir")
    trainer = Trainer(parts.model, parts.objective, out_dir=out, seed=recipe.seed, progress=progress, **settings)
    if init is not None:  # a run already in out_dir resumes instead (fit checks it is the same run)
        path, ema = (init, False) if isinstance(init, str) else (init["path"], bool(init.get("ema", False)))
        trainer.initialize_from(path, ema=ema)
    written = False

    def write_recipe(*_: Any) -> None:  # after the restore, before the first step's checkpoint can exist
        nonlocal written
        if is_main and not written:
            write_text_atomic(out / RECIPE_FILE, yaml.safe_dump(recipe.config, sort_keys=False))
        written = True

    trainer.fit(parts.dataset, resume=resume, callbacks=[write_recipe])
    write_recipe()  # a run already finished runs no step
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


def solver_from(spec: Any) -> Solver:
    """The solver of a spec ``{name, steps, **solver arguments}`` (``steps`` is the sampler's, not the solver's).

    Raises:
        ConfigError: a spec without ``name`` or ``steps``; UnknownComponentError: an unknown solver;
            UnknownArgumentError: an argument the solver does not accept.
    """
    check_solver_spec(spec, "solver spec")
    args = {k: v for k, v in spec.items() if k not in ("name", "steps")}
    return SOLVERS.create(spec["name"], **args)


def sample_with(
    process: GaussianProcess,
    model: ScoreModel,
    spec: dict[str, Any],
    n: int,
    *,
    seed: int = 0,
    batch_size: int | None = None,
) -> SampleOutput:
    """Draw ``n`` samples with the solver ``spec`` = ``{name, steps, **solver arguments}``.

    Raises:
        ConfigError: a spec without ``name`` or ``steps``; UnknownArgumentError: an unknown solver argument.
    """
    solver, steps = solver_from(spec), spec["steps"]
    sampler = Sampler(process, model, solver)
    event_shape = _event_shape(model)
    return sampler.sample(
        (n, *event_shape), steps, generator=torch.Generator().manual_seed(seed), batch_size=batch_size
    )


def _event_shape(model: ScoreModel) -> tuple[int, ...]:
    shape = getattr(model, "event_shape", None)
    if shape is None:
        raise ConfigError(f"{type(model).__name__} does not declare event_shape; pass the sample shape yourself")
    return tuple(shape)
