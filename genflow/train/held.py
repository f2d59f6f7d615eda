"""Networks an objective or a model holds without training them: a teacher, a frozen reference, a classifier.

A :class:`HeldNetwork` wraps a module and keeps it **frozen** (no gradients,
always in eval mode) and **out of sight of training**: it is not a registered
submodule, so its parameters are not in ``parameters()`` (hence not in the
optimiser or its saved state), not in ``state_dict()`` (hence not in the
model's or the EMA's checkpoint tensors), and an EMA copy of a model shares it
instead of duplicating it. It still follows the model to a device or dtype
(``.to()``, ``.double()``), and the :class:`~genflow.train.Trainer` moves the
networks an objective holds to its device.

It is recorded in every checkpoint in one of two ways (a class holding one declares
the argument, ``config_components = {"teacher": "held_network"}``, so its
``to_config`` stores the record and its ``from_config`` rebuilds the network through
:data:`HELD_NETWORKS`):

* **by reference** (:meth:`HeldNetwork.from_checkpoint`): the checkpoint it was
  loaded from, the SHA-256 of that checkpoint's ``tensors.safetensors`` and its
  model config. Rebuilding (``from_config``, on resume or in ``load_trained``)
  loads that checkpoint again and refuses one whose hash changed
  (:class:`HeldNetworkError`).
* **by value** (``HeldNetwork(module)``): the module's config and its weights,
  stored in the trainer's checkpoint under ``held/<name>/`` and restored from
  there.
"""

from __future__ import annotations

import copy
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from torch import nn

from genflow.config import Configurable, build_component
from genflow.errors import ConfigError
from genflow.model.base import MODELS
from genflow.registry import Registry, registries
from genflow.train.checkpoint import TENSORS, Checkpoint, CheckpointError, latest_checkpoint, load_checkpoint
from genflow.train.resume import load_weights

__all__ = [
    "HELD_NETWORKS", "HeldNetwork", "HeldNetworkError", "as_held_network", "find_held_networks",
    "restore_held_weights", "file_sha256", "build_held_module",
]  # fmt: skip


class HeldNetworkError(CheckpointError):
    """A held network's source checkpoint is missing or its content changed since the run recorded it."""


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes (read in 1 MiB chunks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def build_held_module(config: dict[str, Any], where: str) -> nn.Module:
    """Rebuild a held network's module from its config through the registry that knows its name.

    The model family (``MODELS``) first, then any other registry of modules (classifiers, bridges, ...),
    so a frozen classifier or bridge is held like a score model.

    Raises:
        HeldNetworkError: no registry of networks knows the config's name.
    """
    name = config.get("name") if isinstance(config, dict) else None
    if name in MODELS:
        return MODELS.from_config(config)
    for family, registry in registries().items():
        if family != "held_network" and issubclass(registry.base, nn.Module) and name in registry:
            return registry.from_config(config)
    raise HeldNetworkError(f"{where}: model config names {name!r}, which no registry of networks knows")


def step_folder(path: str | os.PathLike[str]) -> Path:
    """The checkpoint folder ``path`` names: itself, or the newest ``step-*`` of a run folder."""
    path = Path(path)
    if path.is_dir() and not (path / "state.json").exists():
        return latest_checkpoint(path) or path  # load_checkpoint reports a folder without checkpoints
    return path


class HeldNetwork(Configurable, nn.Module):
    """A frozen network held by an objective or a model (see the module docstring).

    Call it like the module it holds; ``.module`` is that module. Gradients flow to its *inputs*
    (a frozen classifier can guide), never to its parameters; wrap the call in ``torch.no_grad()``
    when no input gradient is needed either (a distillation teacher).

    Args:
        module: The network, stored by value (weights saved in each checkpoint).

    Raises:
        ConfigError: ``module`` is not an ``nn.Module``.
    """

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        if not isinstance(module, nn.Module) or isinstance(module, HeldNetwork):
            raise ConfigError(f"HeldNetwork holds an nn.Module (not another HeldNetwork); got {type(module).__name__}")
        self.__dict__["_held"] = module.requires_grad_(False).eval()  # bypasses nn.Module registration
        self.source: dict[str, Any] | None = None  # {"source", "sha256", "ema"} when held by reference

    @classmethod
    def from_checkpoint(
        cls, path: str | os.PathLike[str], *, ema: bool = True, sha256: str | None = None
    ) -> HeldNetwork:
        """Load a registered model from a genflow checkpoint and hold it by reference.

        Args:
            path: A checkpoint folder or a run folder (its newest checkpoint).
            ema: Use the EMA weights when the checkpoint has them.
            sha256: Expected hash of the checkpoint's tensors file (a recorded reference); None: any.

        Raises:
            HeldNetworkError: the checkpoint is missing, records no model config, or its hash is not ``sha256``.
        """
        folder = step_folder(path)
        try:
            ckpt = load_checkpoint(folder)
        except CheckpointError as err:
            raise HeldNetworkError(f"cannot load the held network from {path}: {err}") from None
        digest = file_sha256(folder / TENSORS)
        if sha256 is not None and digest != sha256:
            raise HeldNetworkError(
                f"the held network's checkpoint {folder} changed since it was recorded: sha256 {digest}, "
                f"expected {sha256}; restore that checkpoint, or start a new run with the new network"
            )
        config = ckpt.state.get("model_config")
        if config is None:
            raise HeldNetworkError(f"{folder} records no model_config; hold the module by value: HeldNetwork(module)")
        module = build_held_module(config, str(folder))
        module.load_state_dict(ckpt.ema if ema and ckpt.ema else ckpt.model)
        held = cls(module)
        held.source = {"source": str(folder.resolve()), "sha256": digest, "ema": bool(ema)}
        return held

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> HeldNetwork:
        """Rebuild from :meth:`to_config`: reload the referenced checkpoint (hash checked), or build the module
        from its config (weights by value are restored from the trainer's checkpoint afterwards)."""
        config = dict(config)
        if config.pop("name", cls.registry_name) != cls.registry_name or "config" not in config:
            raise ConfigError(f"HeldNetwork.from_config expects a held_network config; got {config!r}")
        if "source" in config:
            return cls.from_checkpoint(config["source"], ema=config.get("ema", True), sha256=config.get("sha256"))
        if config["config"] is None:
            raise ConfigError("this held network was stored by value without a model config; rebuild it in Python")
        return cls(build_held_module(config["config"], "held_network config"))

    def to_config(self) -> dict[str, Any]:
        """The reference (source checkpoint, sha256, ema, model config) or, by value, the model config."""
        inner = self.module.to_config() if isinstance(self.module, Configurable) else None
        if self.source is not None:
            return {"name": self.registry_name, **self.source, "config": inner}
        return {"name": self.registry_name, "by": "value", "config": inner}

    @property
    def module(self) -> nn.Module:
        """The held network."""
        return self.__dict__["_held"]

    @property
    def by_value(self) -> bool:
        """True when the weights are stored in each checkpoint (no source checkpoint)."""
        return self.source is None

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.module(*args, **kwargs)

    def train(self, mode: bool = True) -> HeldNetwork:
        super().train(mode)
        self.module.eval()  # a held network never trains (dropout off, batch-norm statistics fixed)
        return self

    def _apply(self, fn: Any, recurse: bool = True) -> HeldNetwork:  # .to(), .cuda(), .double() reach it
        self.module._apply(fn)
        return super()._apply(fn, recurse)

    def __deepcopy__(self, memo: dict[int, Any]) -> HeldNetwork:
        memo[id(self.module)] = self.module  # an EMA copy of a model shares the frozen network
        clone = type(self).__new__(type(self))
        memo[id(self)] = clone
        clone.__dict__.update({k: copy.deepcopy(v, memo) for k, v in self.__dict__.items()})
        return clone

    def extra_repr(self) -> str:
        where = f"source={self.source['source']!r}" if self.source else "by value"
        return f"{type(self.module).__name__}, {where}"


HELD_NETWORKS: Registry[HeldNetwork] = Registry("held_network", HeldNetwork)
"""The held-network family (one entry, ``held_network``): what ``config_components`` names to rebuild one."""
HELD_NETWORKS.register("held_network")(HeldNetwork)


def as_held_network(value: HeldNetwork | dict[str, Any], name: str) -> HeldNetwork:
    """A held network from an instance or its config dict (a constructor's check of its argument).

    Raises:
        ConfigError: ``value`` is neither. HeldNetworkError: a referenced checkpoint is missing or changed.
    """
    if isinstance(value, dict):
        value = build_component(HELD_NETWORKS.family, value, name)
    if not isinstance(value, HeldNetwork):
        raise ConfigError(f"{name} must be a HeldNetwork or its config dict; got {type(value).__name__}")
    return value


def _walk(prefix: str, value: Any, seen: set[int]) -> Iterator[tuple[str, HeldNetwork]]:
    if isinstance(value, nn.Module):
        for sub, module in value.named_modules(prefix=prefix):
            if isinstance(module, HeldNetwork) and id(module) not in seen:
                seen.add(id(module))
                yield sub, module
        return
    if id(value) in seen:
        return
    seen.add(id(value))
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from _walk(f"{prefix}.{i}", item, seen)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _walk(f"{prefix}.{key}", item, seen)
    elif isinstance(value, Configurable):  # an objective (or a component of one): its attributes
        for key, item in vars(value).items():
            if not key.startswith("_config"):
                yield from _walk(f"{prefix}.{key}", item, seen)


def find_held_networks(**roots: Any) -> dict[str, HeldNetwork]:
    """Every held network reachable from the named roots, e.g. ``find_held_networks(model=m, objective=o)``,
    named by its path (``objective.teacher``, ``model.reference``, ``objective.teachers.0``)."""
    seen: set[int] = set()
    return {name: held for root, value in roots.items() for name, held in _walk(root, value, seen)}


def restore_held_weights(held: dict[str, HeldNetwork], ckpt: Checkpoint, where: str) -> None:
    """Load the by-value weights of ``held`` from ``ckpt`` (by-reference ones were loaded when built).

    Raises:
        HeldNetworkError: a by-value held network has no weights in the checkpoint.
    """
    for name, network in held.items():
        if network.by_value:
            if name not in ckpt.held:
                raise HeldNetworkError(f"{where} holds no weights for the held network {name!r}")
            load_weights(network.module, ckpt.held[name], f"{where} (held network {name})")
