"""A run folder: its saved recipe and its checkpoints' steps.

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

from genflow.recipe import read_recipe_text
from genflow.train.checkpoint import STATE, CheckpointError, latest_checkpoint

__all__ = ["RECIPE_FILE", "run_recipe", "checkpoint_step"]

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
