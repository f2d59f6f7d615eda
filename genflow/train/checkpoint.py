"""Checkpoints: safetensors weights plus JSON state, written atomically, never unpickled.

A checkpoint is a folder ``step-00000100/`` holding ``tensors.safetensors``
(model, EMA and optimiser tensors under ``model/``, ``ema/``, ``optim/`` keys, and
the weights of held networks stored by value under ``held/<name>/``)
and ``state.json`` (step, optimiser hyper-parameters, scheduler state, seed,
config). It is written into a temporary folder and renamed into place, so a
crash leaves either a whole checkpoint or none. Loading reads only safetensors
and JSON: a file crafted to run code when unpickled is refused.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from genflow.errors import GenflowError

__all__ = ["Checkpoint", "CheckpointError", "save_checkpoint", "load_checkpoint", "latest_checkpoint", "prune"]

TENSORS, STATE = "tensors.safetensors", "state.json"


class CheckpointError(GenflowError, ValueError):
    """A checkpoint is missing, incomplete or not in genflow's safe format."""


@dataclass
class Checkpoint:
    """Contents of a checkpoint.

    Attributes:
        step: Optimiser steps taken.
        model: Model ``state_dict``.
        ema: EMA ``state_dict`` (empty if none).
        optimizer: Optimiser ``state_dict`` (rebuilt from tensors and JSON).
        state: The rest of ``state.json`` (scheduler, seed, config, ...).
        held: Weights of held networks stored by value, ``{name: state_dict}`` (see
            :class:`~genflow.train.held.HeldNetwork`).
    """

    step: int
    model: dict[str, Tensor]
    ema: dict[str, Tensor] = field(default_factory=dict)
    optimizer: dict[str, Any] | None = None
    state: dict[str, Any] = field(default_factory=dict)
    held: dict[str, dict[str, Tensor]] = field(default_factory=dict)


def _split_optimizer(optimizer_state: dict[str, Any]) -> tuple[dict[str, Tensor], dict[str, Any]]:
    tensors, per_param = {}, {}
    for index, values in optimizer_state["state"].items():
        per_param[str(index)] = {}
        for name, value in values.items():
            if isinstance(value, Tensor):
                tensors[f"optim/{index}/{name}"] = value.detach().cpu().contiguous()
            else:
                per_param[str(index)][name] = value
    return tensors, {"param_groups": optimizer_state["param_groups"], "scalars": per_param}


def _join_optimizer(tensors: dict[str, Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {int(i): dict(v) for i, v in meta["scalars"].items()}
    for key, value in tensors.items():
        _, index, name = key.split("/", 2)
        state.setdefault(int(index), {})[name] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def save_checkpoint(folder: str | os.PathLike[str], checkpoint: Checkpoint) -> Path:
    """Write ``checkpoint`` to ``folder/step-XXXXXXXX`` atomically; return that path.

    Raises:
        CheckpointError: the write failed (a full disk, no permission); nothing was replaced or removed, and
            the message names the last complete checkpoint.
    """
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    target = root / f"step-{checkpoint.step:08d}"
    tensors = {f"model/{k}": v.detach().cpu().contiguous().clone() for k, v in checkpoint.model.items()}
    tensors.update({f"ema/{k}": v.detach().cpu().contiguous().clone() for k, v in checkpoint.ema.items()})
    for name, weights in checkpoint.held.items():
        tensors.update({f"held/{name}/{k}": v.detach().cpu().contiguous().clone() for k, v in weights.items()})
    state = {"format": "genflow-checkpoint-1", "step": checkpoint.step, **checkpoint.state}
    if checkpoint.optimizer is not None:
        optim_tensors, state["optimizer"] = _split_optimizer(checkpoint.optimizer)
        tensors.update(optim_tensors)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=root))
    try:
        save_file(tensors, str(tmp / TENSORS))
        (tmp / STATE).write_text(json.dumps(state, indent=1, sort_keys=True))
        if target.exists():  # same step saved again: move the old copy aside, then swap in the new one
            aside = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=root))
            os.replace(target, aside / target.name)
            os.replace(tmp, target)
            shutil.rmtree(aside, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(err, OSError):
            full = " (the disk is full)" if err.errno == errno.ENOSPC else ""
            raise CheckpointError(
                f"could not write checkpoint {target}{full}: {err}; nothing was replaced or removed, the last "
                f"complete checkpoint is {latest_checkpoint(root) or 'none (no checkpoint yet)'}"
            ) from err
        raise
    return target


def load_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Read a checkpoint folder written by :func:`save_checkpoint` (or a run folder: its latest).

    Only safetensors and JSON are parsed; nothing is unpickled.

    Raises:
        CheckpointError: no checkpoint there, a missing file, or a tensors file
            that is not safetensors (e.g. a pickle).
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"no checkpoint found at {path}: the path does not exist")
    if path.is_dir() and not (path / STATE).exists():
        latest = latest_checkpoint(path)
        if latest is None:
            raise CheckpointError(f"no checkpoint found in {path} (expected step-XXXXXXXX folders)")
        path = latest
    for name in (TENSORS, STATE):
        if not (path / name).is_file():
            raise CheckpointError(f"{path} is not a genflow checkpoint: {name} is missing")
    try:
        tensors = load_file(str(path / TENSORS))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(
            f"{path / TENSORS} is not a safetensors file ({err}); genflow never unpickles checkpoints"
        ) from None
    try:
        state = json.loads((path / STATE).read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path / STATE} is not valid JSON: {err}") from None
    if state.get("format") != "genflow-checkpoint-1":
        raise CheckpointError(f"{path / STATE}: expected format 'genflow-checkpoint-1'; got {state.get('format')!r}")
    groups: dict[str, dict[str, Tensor]] = {"model": {}, "ema": {}, "optim": {}}
    held: dict[str, dict[str, Tensor]] = {}
    for key, value in tensors.items():
        prefix, _, rest = key.partition("/")
        if prefix == "held":
            name, _, inner = rest.partition("/")
            held.setdefault(name, {})[inner] = value
        else:
            groups.setdefault(prefix, {})[rest if prefix != "optim" else key] = value
    meta = state.pop("optimizer", None)
    optimizer = _join_optimizer(groups["optim"], meta) if meta is not None else None
    step = int(state.pop("step"))
    state.pop("format")
    return Checkpoint(
        step=step, model=groups["model"], ema=groups["ema"], optimizer=optimizer, state=state, held=held
    )


def latest_checkpoint(folder: str | os.PathLike[str]) -> Path | None:
    """The newest complete checkpoint folder under ``folder`` (None if there is none)."""
    root = Path(folder)
    if not root.is_dir():
        return None
    done = sorted(p for p in root.glob("step-*") if p.is_dir() and (p / STATE).is_file())
    return done[-1] if done else None


def prune(folder: str | os.PathLike[str], keep_last: int) -> None:
    """Delete all but the newest ``keep_last`` checkpoints (and stale temporaries) under ``folder``."""
    root = Path(folder)
    done = sorted(p for p in root.glob("step-*") if p.is_dir())
    for old in done[: max(0, len(done) - keep_last)]:
        shutil.rmtree(old, ignore_errors=True)
    for stale in root.glob(".step-*"):
        shutil.rmtree(stale, ignore_errors=True)
