"""Constructor arguments captured as a JSON-able config (the diffusers pattern).

A class deriving from :class:`Configurable` records the arguments of its
constructor call; ``to_config()`` returns them with the registered name and
``from_config()`` rebuilds an equal component. Tensors are stored as nested
lists so the dict survives ``json.dumps``.

Components held by a component (a process inside an objective, members of an
ensemble) are declared, not detected: ``config_components = {"process":
"process"}`` maps a constructor argument to the registry family it comes from.
``to_config()`` stores such an argument as the component's own config and
``from_config()`` rebuilds it through that family's registry, at any depth; a
component under an undeclared argument is refused, since nothing could rebuild it.
"""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar

import torch

from genflow.errors import ConfigError, MissingArgumentError, UnknownArgumentError
from genflow.registry import registry_for

__all__ = ["Configurable", "build_component", "check_arguments"]

C = TypeVar("C", bound="Configurable")


def _jsonable(value: Any, where: str, component: bool) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().tolist()
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, where, component) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v, where, component) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, Configurable):
        if not component:
            raise ConfigError(
                f"{where} holds the component {type(value).__name__}, but the class does not declare the argument "
                "in config_components (argument -> registry family), so from_config could not rebuild it"
            )
        return value.to_config()
    raise ConfigError(f"{where}: argument of type {type(value).__name__} cannot be stored in a JSON config")


def check_arguments(where: str, given: Mapping[str, Any], accepted: list[str], required: list[str]) -> None:
    """Raise a typed error for keywords outside ``accepted`` or a missing ``required`` one.

    Raises:
        UnknownArgumentError: a keyword that is not accepted (the message lists the accepted ones).
        MissingArgumentError: a required keyword is absent.
    """
    unknown = [k for k in given if k not in accepted]
    if unknown:
        raise UnknownArgumentError(
            f"{where}: unknown argument(s) {', '.join(map(repr, unknown))}; "
            f"accepted arguments: {', '.join(accepted) or '(none)'}"
        )
    missing = [k for k in required if k not in given]
    if missing:
        raise MissingArgumentError(f"{where}: missing required argument(s) {', '.join(map(repr, missing))}")


def _check_call(name: str, sig: inspect.Signature, args: tuple[Any, ...], kw: dict[str, Any]) -> None:
    """Explain a call that ``sig`` cannot bind (``bind`` itself says only the first problem, as a bare TypeError)."""
    params = list(sig.parameters.values())[1:]  # without self
    if any(p.kind is p.VAR_KEYWORD for p in params):
        kw = {}  # **kwargs accepts any keyword
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(args) > len(positional) and not any(p.kind is p.VAR_POSITIONAL for p in params):
        raise UnknownArgumentError(f"{name}() takes {len(positional)} positional argument(s); got {len(args)}")
    by_position = {p.name for p in positional[: len(args)]}
    accepted = [p.name for p in params if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL, p.POSITIONAL_ONLY)]
    required = [
        p.name for p in params if p.default is p.empty and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
    ]
    check_arguments(f"{name}()", kw, accepted, [r for r in required if r not in by_position])


def _checked_new(new: Any) -> Any:
    """Wrap a class's ``__new__`` (a family dispatching to its leaves) so that a call it cannot bind raises
    the typed errors ``__init__`` raises, before ``__new__`` runs."""
    sig = inspect.signature(new)

    @functools.wraps(new)
    def checked_new(cls: type, *args: Any, **kw: Any) -> Any:
        try:
            sig.bind(cls, *args, **kw)
        except TypeError as err:
            _check_call(cls.__name__, sig, args, kw)
            raise UnknownArgumentError(f"{cls.__name__}(): {err}") from None
        return new(cls, *args, **kw)

    checked_new._captures_config = True  # type: ignore[attr-defined]
    return checked_new


def build_component(family: str, value: Any, where: str) -> Any:
    """Rebuild a component of registry ``family`` from a config dict, a registered name, or a list of them.

    Instances (and ``None``) pass through unchanged, so a constructor may be given either.

    Raises:
        ConfigError: a value that is neither; UnknownComponentError: an unknown family or name.
    """
    if value is None or isinstance(value, Configurable):
        return value
    registry = registry_for(family)
    if isinstance(value, dict):
        return registry.from_config(value)
    if isinstance(value, str):
        return registry.create(value)
    if isinstance(value, (list, tuple)):
        return [build_component(family, v, where) for v in value]
    raise ConfigError(f"{where}: expected a {family} config dict or name; got {type(value).__name__} {value!r}")


class Configurable:
    """Mixin that records constructor arguments for a config round trip.

    The registry sets ``registry_name`` when a class is registered. A class whose
    constructor takes other components declares them in ``config_components``
    (argument name -> registry family, e.g. ``{"process": "process"}``).
    """

    registry_name: ClassVar[str | None] = None
    config_components: ClassVar[Mapping[str, str]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        new = cls.__dict__.get("__new__")
        if isinstance(new, staticmethod) and not getattr(new.__func__, "_captures_config", False):
            cls.__new__ = staticmethod(_checked_new(new.__func__))  # type: ignore[method-assign]
        init = cls.__dict__.get("__init__")
        if init is None or getattr(init, "_captures_config", False):
            return
        sig = inspect.signature(init)

        @functools.wraps(init)
        def captured_init(self: Any, *args: Any, **kw: Any) -> None:
            try:
                bound = sig.bind(self, *args, **kw)
            except TypeError as err:
                _check_call(type(self).__name__, sig, args, kw)
                raise UnknownArgumentError(f"{type(self).__name__}(): {err}") from None  # e.g. a value given twice
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
        """Return ``{"name": registered name, **constructor arguments}`` (JSON-able).

        Raises:
            ConfigError: an argument that cannot be stored (a component under an argument missing from
                ``config_components``, or an object that is not JSON-able).
        """
        return {"name": type(self).registry_name or type(self).__name__, **self.config_arguments()}

    def config_arguments(self) -> dict[str, Any]:
        """The constructor arguments (defaults included) as JSON-able values, without the name.

        Raises:
            ConfigError: as :meth:`to_config`.
        """
        cls = type(self)
        args = getattr(self, "_config_args", {})
        return {k: _jsonable(v, f"{cls.__name__}.{k}", k in cls.config_components) for k, v in args.items()}

    @classmethod
    def from_config(cls: type[C], config: dict[str, Any]) -> C:
        """Rebuild a component from :meth:`to_config`'s dict; declared components are rebuilt by registry name.

        Raises:
            ConfigError: the dict names another class, or a nested component cannot be rebuilt.
            UnknownArgumentError: a key the constructor does not accept.
        """
        if not isinstance(config, dict):
            raise ConfigError(f"{cls.__name__}.from_config expects a dict; got {type(config).__name__}")
        config = dict(config)
        name = config.pop("name", None)
        expected = cls.registry_name or cls.__name__
        if name is not None and name != expected:
            raise ConfigError(f"{cls.__name__}.from_config expects name {expected!r}; got {name!r}")
        for key, family in cls.config_components.items():
            if key in config:
                config[key] = build_component(family, config[key], f"{cls.__name__}.{key}")
        return cls(**config)
