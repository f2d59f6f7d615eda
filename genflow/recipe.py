"""Recipes: YAML files that name every component by its registry name (dependency injection in configs).

A recipe has the sections ``data``, ``process``, ``model``, ``objective``,
``trainer``, ``sample`` and the keys ``out_dir`` and ``seed``. Each component
section is a config dict ``{name: ..., **arguments}`` resolved through its
registry, so a recipe can name any registered component, including a user's.
Any key can be overridden from the command line as ``section.key=value``
(the value is parsed as YAML: ``trainer.steps=200``, ``model.depth=2``,
``sample.solvers=[ddim]``).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from genflow.errors import ConfigError

__all__ = ["load_recipe", "apply_overrides", "recipe_names", "Recipe"]

SECTIONS = ("data", "process", "model", "objective", "trainer", "sample")


class _Loader(yaml.SafeLoader):
    """YAML 1.1 safe loader that also reads ``1e-3`` (no dot) as a float, as YAML 1.2 does."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def _parse(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # a SafeLoader subclass: no arbitrary objects


@dataclass
class Recipe:
    """A parsed recipe: its dict and where it came from."""

    config: dict[str, Any]
    source: str


def recipe_names() -> list[str]:
    """Names of the recipes shipped inside genflow (``genflow/recipes/*.yaml``)."""
    return sorted(
        p.name[: -len(".yaml")] for p in resources.files("genflow.recipes").iterdir() if p.name.endswith(".yaml")
    )


def load_recipe(name_or_path: str | Path, overrides: Sequence[str] = ()) -> Recipe:
    """Load a shipped recipe by name, or a YAML file by path, and apply ``overrides``.

    Raises:
        ConfigError: unknown recipe, invalid YAML, a missing section, or a bad override.
    """
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise ConfigError(f"recipe file {path} does not exist")
        text, source = path.read_text(), str(path)
    else:
        shipped = resources.files("genflow.recipes") / f"{name_or_path}.yaml"
        if not shipped.is_file():
            raise ConfigError(f"unknown recipe {str(name_or_path)!r}; shipped recipes: {', '.join(recipe_names())}")
        text, source = shipped.read_text(), f"genflow/recipes/{name_or_path}.yaml"
    try:
        config = _parse(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{source} is not valid YAML: {err}") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{source} must hold a mapping of sections; got {type(config).__name__}")
    missing = [s for s in SECTIONS if s not in config]
    if missing:
        raise ConfigError(f"{source} lacks the section(s) {', '.join(missing)}; a recipe needs {', '.join(SECTIONS)}")
    return Recipe(apply_overrides(config, overrides), source)


def apply_overrides(config: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Return a copy of ``config`` with ``dotted.key=value`` overrides applied (values parsed as YAML)."""
    config = copy.deepcopy(config)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override must look like section.key=value; got {item!r}")
        parts = key.split(".")
        node = config
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                raise ConfigError(f"override {item!r}: {part!r} is not a section of the recipe")
            node = child
        try:
            node[parts[-1]] = _parse(raw)
        except yaml.YAMLError as err:
            raise ConfigError(f"override {item!r}: value is not valid YAML ({err})") from None
    return config
