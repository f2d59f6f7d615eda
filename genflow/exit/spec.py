"""Exit policies named on a command line or in a recipe: ``NAME``, ``NAME:{json args}`` or a JSON file.

``genflow sample CKPT --exit staircase:{"fractions": [1, 1, 0.8, 0.6]}`` and a
recipe's ``sample.exit`` block both go through :func:`exit_policy_from`, so a
policy written by :meth:`~genflow.config.Configurable.to_config` (a calibrated
one, say) can be saved as JSON and named by its path.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from genflow.errors import ConfigError
from genflow.exit.base import ExitPolicy
from genflow.exit.model import resolve_policy

__all__ = ["exit_policy_from"]


def exit_policy_from(spec: Any, where: str = "exit policy") -> ExitPolicy:
    """An :class:`ExitPolicy` from a spec.

    Args:
        spec: An ``ExitPolicy``; a config mapping ``{name: ..., **arguments}``; a registered
            name (``full``); ``NAME:ARGS`` with ``ARGS`` a JSON object of arguments
            (``linear:{"start": 1, "end": 0.5}``); or the path of a ``.json`` file holding a config.
        where: Names the spec's origin in messages (``--exit``, ``sample.exit``).

    Raises:
        ConfigError: unreadable JSON, arguments that are not a JSON object, or another type.
        UnknownComponentError / UnknownArgumentError: an unknown policy or argument.
    """
    if isinstance(spec, str) and spec.endswith(".json"):
        path = Path(spec)
        if not path.is_file():
            raise ConfigError(f"{where}: the policy file {spec} does not exist")
        spec = _json(path.read_text(), f"{where} ({spec})")
    elif isinstance(spec, str) and ":" in spec:
        name, args = spec.split(":", 1)
        spec = {"name": name, **_json(args, f"{where} arguments of {name!r}")}
    if not isinstance(spec, (str, dict, ExitPolicy)):
        raise ConfigError(f"{where} must be a policy name, NAME:{{json}}, a .json file or a mapping; got "
                          f"{type(spec).__name__}")  # fmt: skip
    return resolve_policy(spec, where)


def _json(text: str, where: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(f"{where} is not valid JSON ({err}); got {text!r}") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a JSON object {{...}}; got {type(value).__name__}")
    return value
