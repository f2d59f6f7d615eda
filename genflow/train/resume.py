"""What a resumed run must share with the run it continues, and loading weights with a one-line error.

A checkpoint continues a run only if everything that defines the function
being learned is unchanged: the model config (architecture and
parameterisation), the objective config (including its process and any held
network) and the settings that fix the data order (batch size, world size,
seed). A deliberate change (fine-tuning a v-prediction model as eps, another
process, another weighting) starts a new run from the old weights:
:meth:`genflow.train.Trainer.initialize_from` (recipe key ``init_from``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn

from genflow.errors import ConfigError

__all__ = ["config_changes", "check_same_run", "load_weights"]

ORDER_SETTINGS = ("batch_size", "world_size", "seed")  # resuming with other values would not continue the run
FUNCTION_KEYS = ("model_config", "objective_config")  # what defines the function being learned


def config_changes(saved: Any, now: Any, where: str) -> list[str]:
    """``"where.key: saved A, now B"`` for every leaf that differs between two JSON-like values."""
    if isinstance(saved, Mapping) and isinstance(now, Mapping):
        changes = []
        for key in sorted(set(saved) | set(now), key=str):
            if key not in now:
                changes.append(f"{where}.{key}: saved {saved[key]!r}, now absent")
            elif key not in saved:
                changes.append(f"{where}.{key}: absent before, now {now[key]!r}")
            else:
                changes += config_changes(saved[key], now[key], f"{where}.{key}")
        return changes
    if isinstance(saved, (list, tuple)) and isinstance(now, (list, tuple)) and len(saved) == len(now):
        pairs = enumerate(zip(saved, now, strict=True))
        return [c for i, (a, b) in pairs for c in config_changes(a, b, f"{where}[{i}]")]
    return [] if saved == now else [f"{where}: saved {saved!r}, now {now!r}"]


def check_same_run(folder: Any, saved: Mapping[str, Any], now: Mapping[str, Any]) -> None:
    """Raise :class:`ConfigError` unless the state ``now`` continues the checkpoint state ``saved``.

    Raises:
        ConfigError: a changed data-order setting, model config or objective config (the message
            lists every change and says how to make a deliberate change).
    """
    saved_settings, settings = saved.get("trainer", {}), now["trainer"]
    order = [
        f"{k}: saved {saved_settings[k]!r}, now {settings[k]!r}"
        for k in ORDER_SETTINGS
        if k in saved_settings and saved_settings[k] != settings[k]
    ]
    if order:
        raise ConfigError(
            f"cannot resume {folder}: the data order depends on settings that changed ({', '.join(order)}); "
            "use the saved settings or another out_dir"
        )
    changes = [
        c
        for key in FUNCTION_KEYS
        if saved.get(key) is not None and now.get(key) is not None
        for c in config_changes(saved[key], now[key], key.removesuffix("_config"))
    ]
    if changes:
        raise ConfigError(
            f"cannot resume {folder}: what defines the learned function changed ({'; '.join(changes)}). "
            "Resuming would train the saved weights as something else. To change it on purpose, start a new run "
            "from these weights (Trainer.initialize_from(checkpoint), recipe key init_from) in another out_dir"
        )


def load_weights(module: nn.Module, state: Mapping[str, Tensor], where: str) -> None:
    """``module.load_state_dict(state)`` with one summarising :class:`ConfigError` instead of a wall of keys.

    Raises:
        ConfigError: missing or unexpected keys, or shape mismatches (one line: the count and the first three
            names of each kind found).
    """
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
        for k in own
        if k in state and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    found = {"missing key(s)": missing, "unexpected key(s)": unexpected, "shape mismatch(es) (saved vs model)": shapes}
    details = "; ".join(
        f"{len(items)} {kind}: {', '.join(items[:3])}{', ...' if len(items) > 3 else ''}"
        for kind, items in found.items()
        if items
    )
    if details:
        raise ConfigError(
            f"{where} does not fit this model ({details}); was it saved from another model size or architecture?"
        )
    module.load_state_dict(state)
