"""User code on the command line: import plugin modules before anything is built.

A plugin is a Python module (a dotted name on ``sys.path``, or the path of a
``.py`` file) whose import registers components, e.g. a ``ScoreModel`` subclass
under ``@MODELS.register("my_model")``; a recipe can then name them. ``genflow
--plugin MODULE`` and a recipe's ``plugins: [...]`` both go through
:func:`import_plugins`. Importing is idempotent: a module already imported is not
run again, so its registrations are not repeated.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType

from genflow.errors import ConfigError

__all__ = ["import_plugins"]


def _import_file(path: Path) -> ModuleType:
    path = path.resolve()
    for module in list(sys.modules.values()):
        if getattr(module, "__file__", None) and Path(module.__file__).resolve() == path:
            return module  # imported before (as a file or by name)
    if not path.is_file():
        raise ConfigError(f"plugin file {path} does not exist")
    name = f"genflow_plugin_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"plugin {path} is not an importable Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def import_plugins(names: Iterable[str]) -> list[ModuleType]:
    """Import each plugin (a module name, or a path ending in ``.py``) once, in order.

    Errors raised by the plugin's own code propagate unchanged (with their traceback).

    Raises:
        ConfigError: a module that cannot be found, or a file that does not exist.
    """
    modules = []
    for name in names:
        if name.endswith(".py"):
            modules.append(_import_file(Path(name)))
            continue
        try:
            modules.append(importlib.import_module(name))
        except ModuleNotFoundError as err:
            if err.name is None or not (name == err.name or name.startswith(err.name + ".")):
                raise  # the plugin itself was found; something it imports is missing
            raise ConfigError(
                f"cannot import plugin {name!r}: no module named {err.name!r} (is its folder on PYTHONPATH?)"
            ) from None
    return modules
