"""Constructor arguments captured as a JSON-able config (the diffusers pattern).

A class deriving from :class:`Configurable` records the arguments of its
constructor call; ``to_config()`` returns them with the registered name and
``from_config()`` rebuilds an equal component. Tensors are stored as nested
lists so the dict survives ``json.dumps``.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, ClassVar, TypeVar

import torch

from genflow.errors import ConfigError

__all__ = ["Configurable"]

C = TypeVar("C", bound="Configurable")


def _jsonable(value: Any, where: str) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().tolist()
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, where) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v, where) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Configurable):
        return value.to_config()
    raise ConfigError(f"{where}: argument of type {type(value).__name__} cannot be stored in a JSON config")


def _unknown_keyword_message(name: str, sig: inspect.Signature, err: TypeError) -> str:
    accepted = [p.name for p in sig.parameters.values() if p.name != "self" and p.kind is not p.VAR_KEYWORD]
    return f"{name}(): {err}; accepted arguments: {', '.join(accepted) or '(none)'}"


class Configurable:
    """Mixin that records constructor arguments for a config round trip.

    The registry sets ``registry_name`` when a class is registered.
    """

    registry_name: ClassVar[str | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is None or getattr(init, "_captures_config", False):
            return
        sig = inspect.signature(init)

        @functools.wraps(init)
        def captured_init(self: Any, *args: Any, **kw: Any) -> None:
            try:
                bound = sig.bind(self, *args, **kw)
            except TypeError as err:
                raise TypeError(_unknown_keyword_message(type(self).__name__, sig, err)) from None
            if "_config_args" not in self.__dict__:  # the outermost (most derived) call wins
                bound.apply_defaults()
                arguments = dict(bound.arguments)
                arguments.pop("self", None)
                for p in sig.parameters.values():
                    if p.kind is p.VAR_KEYWORD and p.name in arguments:
                        arguments.update(arguments.pop(p.name))
                object.__setattr__(self, "_config_args", arguments)
            init(self, *args, **kw)

        captured_init._captures_config = True  # type: ignore[attr-defined]
        cls.__init__ = captured_init  # type: ignore[method-assign]

    def to_config(self) -> dict[str, Any]:
        """Return ``{"name": registered name, **constructor arguments}`` (JSON-able)."""
        name = type(self).registry_name or type(self).__name__
        args = getattr(self, "_config_args", {})
        return {"name": name, **{k: _jsonable(v, f"{type(self).__name__}.{k}") for k, v in args.items()}}

    @classmethod
    def from_config(cls: type[C], config: dict[str, Any]) -> C:
        """Rebuild a component from :meth:`to_config`'s dict.

        Raises:
            ConfigError: the dict names another class.
        """
        if not isinstance(config, dict):
            raise ConfigError(f"{cls.__name__}.from_config expects a dict; got {type(config).__name__}")
        config = dict(config)
        name = config.pop("name", None)
        expected = cls.registry_name or cls.__name__
        if name is not None and name != expected:
            raise ConfigError(f"{cls.__name__}.from_config expects name {expected!r}; got {name!r}")
        return cls(**config)
