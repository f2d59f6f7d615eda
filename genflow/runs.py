"""A run folder: its saved recipe, its checkpoints' steps, the resume check, and ``init_from``.

``genflow train`` writes the resolved recipe as ``recipe.yaml`` beside the
``step-XXXXXXXX`` checkpoint folders; ``sample`` and ``evaluate`` read it back (for
the plugins and solvers a run needs). Everything here validates what it reads and
raises typed errors, so a damaged run folder is reported in one line.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch

from genflow.config import Configurable
from genflow.errors import ConfigError
from genflow.recipe import read_recipe_text
from genflow.train.checkpoint import STATE, CheckpointError, latest_checkpoint, load_checkpoint

__all__ = ["RECIPE_FILE", "run_recipe", "checkpoint_step", "check_resumable", "initialize_from"]

RECIPE_FILE = "recipe.yaml"
STEP_FOLDER = re.compile(r"step-(\d+)")


def run_recipe(path: str | Path) -> dict[str, Any] | None:
    """The resolved recipe saved beside a run's checkpoints (``path`` = run or step folder), if any.

    Raises:
        ConfigError: the saved ``recipe.yaml`` is not valid YAML or not a valid recipe.
    """
    path = Path(path)
    for folder in (path, path.parent):
        if (folder / RECIPE_FILE).is_file():
            return read_recipe_text((folder / RECIPE_FILE).read_text(), str(folder / RECIPE_FILE))
    return None


def checkpoint_step(path: str | Path) -> int:
    """The step of the checkpoint at ``path`` (a ``step-N`` folder, or a run folder: its latest).

    Raises:
        CheckpointError: no checkpoint there, a checkpoint folder not named ``step-N``, or a
            ``state.json`` whose ``step`` is missing, not an integer or not ``N``.
    """
    path = Path(path)
    folder = path if (path / STATE).is_file() else latest_checkpoint(path)
    if folder is None:
        raise CheckpointError(f"no checkpoint found at {path} (expected a step-XXXXXXXX folder or a run folder)")
    match = STEP_FOLDER.fullmatch(folder.name)
    if match is None:
        raise CheckpointError(f"{folder}: a checkpoint folder is named step-XXXXXXXX; got {folder.name!r}")
    try:
        state = json.loads((folder / STATE).read_text())
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{folder / STATE} cannot be read as JSON: {err}") from None
    step = state.get("step") if isinstance(state, dict) else None
    if not isinstance(step, int) or isinstance(step, bool) or step != int(match.group(1)):
        raise CheckpointError(
            f"{folder / STATE}: expected 'step' to be the integer {int(match.group(1))} of the folder name; "
            f"got {step!r}"
        )
    return step


def check_resumable(out: Path, model: Configurable, objective: Configurable, process: Configurable) -> None:
    """Refuse to resume a run whose model, process or objective differs from the recipe's (a changed function
    to learn is a new run: start it elsewhere, from these weights with ``init_from`` if wanted).

    Raises:
        ConfigError: a component's config differs from the one the latest checkpoint records.
        CheckpointError: an unreadable ``state.json``.
    """
    latest = latest_checkpoint(out)
    if latest is None:
        return
    try:
        state = json.loads((latest / STATE).read_text())
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{latest / STATE} cannot be read as JSON: {err}") from None
    now = {"model": model.to_config(), "objective": objective.to_config(), "process": process.to_config()}
    changed = [
        f"{key}: saved {state[key + '_config']}, now {config}"
        for key, config in now.items()
        if isinstance(state, dict) and state.get(key + "_config") not in (None, config)
    ]
    if changed:
        raise ConfigError(
            f"cannot resume {out}: the recipe changed what is learned ({'; '.join(changed)}); train into another "
            "out_dir (with init_from to start from these weights)"
        )


def initialize_from(model: torch.nn.Module, spec: str | dict[str, Any]) -> None:
    """Load a checkpoint's weights (``spec`` = path, or ``{path, ema}``) into ``model`` (the recipe's ``init_from``).

    Raises:
        CheckpointError: no checkpoint there.
        ConfigError: no EMA weights when ``ema`` is asked for, or weights that do not fit the model (the
            message names the missing, unexpected and mismatched keys).
    """
    path, ema = (spec, False) if isinstance(spec, str) else (spec["path"], bool(spec.get("ema", False)))
    ckpt = load_checkpoint(path)
    if ema and not ckpt.ema:
        raise ConfigError(f"init_from {path}: the checkpoint has no EMA weights; set ema: false")
    weights = ckpt.ema if ema else ckpt.model
    own = model.state_dict()
    problems = {
        "missing": sorted(set(own) - set(weights)),
        "unexpected": sorted(set(weights) - set(own)),
        "of another shape": sorted(
            f"{k} {tuple(weights[k].shape)} vs {tuple(own[k].shape)}"
            for k in set(own) & set(weights)
            if weights[k].shape != own[k].shape
        ),
    }
    found = {kind: keys for kind, keys in problems.items() if keys}
    if found:
        details = "; ".join(
            f"{len(keys)} {kind} key(s): {', '.join(keys[:4])}{', ...' if len(keys) > 4 else ''}"
            for kind, keys in found.items()
        )
        raise ConfigError(f"init_from {path}: the weights do not fit the recipe's model ({details})")
    model.load_state_dict(weights)
