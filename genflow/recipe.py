"""Recipes: YAML files that name every component by its registry name (dependency injection in configs).

A recipe has the sections ``data``, ``process``, ``model``, ``objective``,
``trainer``, ``sample`` and may set ``seed``, ``out_dir``, ``init_from`` (start
from a trained checkpoint's weights) and ``plugins`` (modules imported first, so
their registered components can be named). A classifier recipe (``model.name`` a
registered classifier, :data:`genflow.classify.CLASSIFIERS`) needs no ``process``
or ``sample`` and may add ``validation`` (data for the validation metrics) and
``ensemble: {members: M}`` (see :func:`genflow.classify.train_recipe`). Each component section is a config
dict ``{name: ..., **arguments}`` resolved through its registry, so a recipe can
name any registered component, including a user's. Any key can be overridden from
the command line as ``section.key=value`` (the value is parsed as YAML:
``trainer.steps=200``, ``model.depth=2``, ``sample.solvers=[ddim]``).

:func:`load_recipe` checks the recipe against a schema: the top-level keys are
fixed, ``trainer`` and ``sample`` keys are typed with ranges (``TRAINER_KEYS``,
``SAMPLE_KEYS``); a component section is checked by its component, which accepts
only its declared arguments, when :func:`genflow.pipeline.build` builds it.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from genflow.config import check_arguments
from genflow.errors import ConfigError

__all__ = [
    "load_recipe",
    "read_recipe_text",
    "apply_overrides",
    "recipe_names",
    "validate_recipe",
    "check_solver_spec",
    "is_classifier_recipe",
    "is_bridge_recipe",
    "Recipe",
    "TRAINER_KEYS",
    "SAMPLE_KEYS",
]

SECTIONS = ("data", "process", "model", "objective", "trainer", "sample")
CLASSIFIER_SECTIONS = ("data", "model", "objective", "trainer")  # a classifier has no process and samples nothing
BRIDGE_SECTIONS = ("data", "model", "objective", "trainer", "bridge")  # a bridge's process is in its model
COMPONENT_SECTIONS = ("data", "process", "model", "objective")
Check = Callable[[Any, str], None]


class _Loader(yaml.SafeLoader):
    """YAML 1.1 safe loader that also reads ``1e-3`` (no dot) as a float, as YAML 1.2 does."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def _parse(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # a SafeLoader subclass: no arbitrary objects


# ------------------------------------------------------------------------------------------ schema
def _got(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def integer(minimum: int) -> Check:
    """An int (not a bool) ``>= minimum``."""

    def check(value: Any, where: str) -> None:
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise ConfigError(f"{where} must be an integer >= {minimum}; got {_got(value)}")

    return check


def number(minimum: float, *, exclusive: bool = False, below: float | None = None) -> Check:
    """A real number (int or float, not a bool) ``>= minimum`` (``>`` if ``exclusive``), ``< below`` if given."""

    def check(value: Any, where: str) -> None:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value == value
        ok = ok and (value > minimum if exclusive else value >= minimum) and (below is None or value < below)
        if not ok:
            bound = f"{'>' if exclusive else '>='} {minimum}" + (f" and < {below}" if below is not None else "")
            raise ConfigError(f"{where} must be a number {bound}; got {_got(value)}")

    return check


def boolean(value: Any, where: str) -> None:
    """``true`` or ``false``."""
    if not isinstance(value, bool):
        raise ConfigError(f"{where} must be true or false; got {_got(value)}")


def choice(*options: str) -> Check:
    """One of ``options``."""

    def check(value: Any, where: str) -> None:
        if value not in options:
            raise ConfigError(f"{where} must be one of {', '.join(options)}; got {_got(value)}")

    return check


def _betas(value: Any, where: str) -> None:
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ConfigError(f"{where} must be a list of two numbers in [0, 1); got {_got(value)}")
    for i, beta in enumerate(value):
        number(0.0, below=1.0)(beta, f"{where}[{i}]")


def _optional(check: Check) -> Check:
    def optional(value: Any, where: str) -> None:
        if value is not None:
            check(value, where)

    return optional


#: The recipe's ``trainer`` keys, their types and ranges (keyword arguments of the Trainer).
TRAINER_KEYS: dict[str, Check] = {
    "steps": integer(1),
    "batch_size": integer(1),
    "lr": number(0.0, exclusive=True),
    "weight_decay": number(0.0),
    "betas": _betas,
    "lr_schedule": choice("constant", "cosine"),
    "warmup_steps": integer(0),
    "ema_decay": number(0.0, below=1.0),
    "grad_clip": number(0.0),
    "mixed_precision": boolean,
    "checkpoint_every": integer(0),
    "keep_last": integer(1),
    "log_every": integer(1),
    "tensorboard": boolean,
    "skip_nonfinite": boolean,
    "validate_every": integer(0),
}


def _solvers(value: Any, where: str) -> None:
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{where} must be a non-empty list of solver specs {{name, steps, ...}}; got {_got(value)}")
    for i, spec in enumerate(value):
        check_solver_spec(spec, f"{where}[{i}]")


def check_solver_spec(spec: Any, where: str) -> None:
    """A solver spec is a mapping with a ``name`` (str) and ``steps`` (int >= 1); the rest are solver arguments.

    Raises:
        ConfigError: another shape or type.
    """
    if not isinstance(spec, dict):
        raise ConfigError(f"{where} must be a mapping {{name: solver, steps: N, ...}}; got {_got(spec)}")
    if not isinstance(spec.get("name"), str):
        raise ConfigError(f"{where} needs a solver 'name' (a string); got {spec!r}")
    if "steps" not in spec:
        raise ConfigError(f"{where} needs 'steps' (grid steps, an integer >= 1); got {spec!r}")
    integer(1)(spec["steps"], f"{where}.steps")


def _exit(value: Any, where: str) -> None:
    if isinstance(value, str) and value:
        return
    if not isinstance(value, dict) or not isinstance(value.get("name"), str):
        raise ConfigError(f"{where} must be an exit policy: a name, NAME:{{json}}, a .json path or "
                          f"{{name: registered policy, ...arguments}}; got {_got(value)}")  # fmt: skip


#: The recipe's ``sample`` keys (read by ``genflow demo``, ``genflow sample`` and ``genflow evaluate``);
#: ``exit`` is the early-exit policy ``genflow sample`` uses by default (see :mod:`genflow.exit`).
SAMPLE_KEYS: dict[str, Check] = {
    "n": integer(2),
    "batch_size": _optional(integer(1)),
    "solvers": _solvers,
    "exit": _exit,
}


def _init_from(value: Any, where: str) -> None:
    if isinstance(value, str) and value:
        return
    if isinstance(value, dict):
        check_arguments(where, value, ["path", "ema"], ["path"])
        if not isinstance(value["path"], str) or not value["path"]:
            raise ConfigError(f"{where}.path must be a checkpoint path (a string); got {_got(value['path'])}")
        boolean(value.get("ema", False), f"{where}.ema")
        return
    raise ConfigError(f"{where} must be a checkpoint path or {{path: ..., ema: true|false}}; got {_got(value)}")


def _plugins(value: Any, where: str) -> None:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{where} must be a list of module names (or .py paths); got {_got(value)}")


def _path_string(value: Any, where: str) -> None:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where} must be a folder path (a non-empty string); got {_got(value)}")


def _section(value: Any, where: str) -> None:
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a section (a mapping); got {_got(value)}")


def _component(value: Any, where: str) -> None:
    if not isinstance(value, dict) or not isinstance(value.get("name"), str):
        raise ConfigError(f"{where} must be a section {{name: registered name, ...arguments}}; got {_got(value)}")


def _ensemble(value: Any, where: str) -> None:
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a section {{members: M}}; got {_got(value)}")
    check_arguments(where, value, ["members"], ["members"])
    integer(1)(value["members"], f"{where}.members")


TOP_LEVEL_KEYS: dict[str, Check] = {
    **{name: _component for name in COMPONENT_SECTIONS},
    "trainer": _section,
    "sample": _section,
    "seed": integer(0),
    "out_dir": _path_string,
    "init_from": _init_from,
    "plugins": _plugins,
    "validation": _component,
    "ensemble": _ensemble,
    "bridge": _section,
    "distill": _section,
}


def validate_recipe(config: Any, source: str) -> None:
    """Check a recipe's keys, types and ranges (component arguments are checked when built).

    Raises:
        ConfigError: not a mapping, a missing section, or a value of the wrong type or range.
        UnknownArgumentError: an unknown top-level, ``trainer`` or ``sample`` key (the message lists the
            accepted ones).
    """
    if not isinstance(config, dict):
        raise ConfigError(f"{source} must hold a mapping of sections; got {type(config).__name__}")
    classifier, bridge = is_classifier_recipe(config), is_bridge_recipe(config)
    needed = CLASSIFIER_SECTIONS if classifier else BRIDGE_SECTIONS if bridge else SECTIONS
    missing = [s for s in needed if s not in config]
    if missing:
        kind = "a classifier recipe" if classifier else "a bridge recipe" if bridge else "a recipe"
        raise ConfigError(f"{source} lacks the section(s) {', '.join(missing)}; {kind} needs {', '.join(needed)}")
    check_arguments(f"{source}: recipe", config, list(TOP_LEVEL_KEYS), [])
    for key, value in config.items():
        TOP_LEVEL_KEYS[key](value, key)
    for key in ("validation", "ensemble"):
        if key in config and not classifier:
            raise ConfigError(f"{source}: {key!r} is a classifier recipe's section; model {config['model']!r} "
                              "is not a registered classifier")  # fmt: skip
    for key in ("bridge", "distill"):
        if key in config and not bridge:
            raise ConfigError(f"{source}: {key!r} is a bridge recipe's section; model {config['model']!r} "
                              "is not a registered bridge")  # fmt: skip
    for section, schema in (("trainer", TRAINER_KEYS), ("distill", TRAINER_KEYS), ("sample", SAMPLE_KEYS)):
        if section not in config:
            continue
        check_arguments(f"{source}: section {section!r}", config[section], list(schema), [])
        for key, value in config[section].items():
            schema[key](value, f"{section}.{key}")


def is_classifier_recipe(config: Any) -> bool:
    """Whether a recipe's ``model`` names a registered classifier (:data:`genflow.classify.CLASSIFIERS`)."""
    from genflow.classify.base import CLASSIFIERS  # here: genflow.classify imports this module

    model = config.get("model") if isinstance(config, dict) else None
    return isinstance(model, dict) and isinstance(model.get("name"), str) and model["name"] in CLASSIFIERS


def is_bridge_recipe(config: Any) -> bool:
    """Whether a recipe's ``model`` names a registered bridge (:data:`genflow.bridge.BRIDGES`)."""
    from genflow.bridge.base import BRIDGES  # here: genflow.bridge imports this module

    model = config.get("model") if isinstance(config, dict) else None
    return isinstance(model, dict) and isinstance(model.get("name"), str) and model["name"] in BRIDGES


@dataclass
class Recipe:
    """A parsed recipe: its dict and where it came from."""

    config: dict[str, Any]
    source: str

    @property
    def seed(self) -> int:
        """The recipe's ``seed`` (default 0)."""
        return int(self.config.get("seed", 0))

    @property
    def plugins(self) -> list[str]:
        """The modules the recipe needs imported (``plugins``; default none)."""
        return list(self.config.get("plugins", []))


def recipe_names() -> list[str]:
    """Names of the recipes shipped inside genflow (``genflow/recipes/*.yaml``)."""
    return sorted(
        p.name[: -len(".yaml")] for p in resources.files("genflow.recipes").iterdir() if p.name.endswith(".yaml")
    )


def read_recipe_text(text: str, source: str) -> dict[str, Any]:
    """Parse and validate a recipe's YAML text.

    Raises:
        ConfigError: invalid YAML or a recipe that fails :func:`validate_recipe`.
    """
    config = _parse_mapping(text, source)
    validate_recipe(config, source)
    return config


def _parse_mapping(text: str, source: str) -> dict[str, Any]:
    try:
        config = _parse(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{source} is not valid YAML: {err}") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{source} must hold a mapping of sections; got {type(config).__name__}")
    return config


def load_recipe(name_or_path: str | Path, overrides: Sequence[str] = ()) -> Recipe:
    """Load a shipped recipe by name, or a YAML file by path, apply ``overrides`` and validate the result.

    Raises:
        ConfigError: unknown recipe, invalid YAML, a missing section, a bad override, or a key of the
            wrong type or range (see :func:`validate_recipe`).
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
    config = apply_overrides(_parse_mapping(text, source), overrides)
    validate_recipe(config, source + (" with overrides" if overrides else ""))
    return Recipe(config, source)


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
