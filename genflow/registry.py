"""A registry per component family: name -> class (the timm pattern).

``SOLVERS.create("dopri5", rtol=1e-6)`` builds a component from a string,
``SOLVERS.names()`` lists them, ``SOLVERS.from_config(cfg)`` rebuilds one from
its config. Registering a duplicate name or an abstract class is an error.
Every registry is reachable by its family name through :func:`registry_for`, so a
config can say which family a nested component comes from.
"""

from __future__ import annotations

import fnmatch
import inspect
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from genflow.errors import ConfigError, RegistryError, UnknownComponentError

__all__ = ["Registry", "registry_for", "registries"]

T = TypeVar("T")

_REGISTRIES: dict[str, Registry[Any]] = {}


def registry_for(family: str) -> Registry[Any]:
    """The registry of ``family`` ("process", "solver", "model", ...).

    Raises:
        UnknownComponentError: no registry of that family (the message lists the known ones).
    """
    try:
        return _REGISTRIES[family]
    except KeyError:
        raise UnknownComponentError(
            f"unknown registry family {family!r}; expected one of: {', '.join(sorted(_REGISTRIES))}"
        ) from None


def registries() -> dict[str, Registry[Any]]:
    """Every registry created so far, by family name."""
    return dict(_REGISTRIES)


class Registry(Generic[T]):
    """Maps names to concrete subclasses of one base class.

    Args:
        family: Human-readable family name used in messages ("solver").
        base: The abstract base class every entry must derive from.
        check: Optional family-specific validation run on each class at registration
            (raises :class:`RegistryError`), e.g. that a solver declares its kind.
    """

    def __init__(self, family: str, base: type, check: Callable[[type], None] | None = None) -> None:
        if family in _REGISTRIES:
            raise RegistryError(f"a registry of family {family!r} already exists: {_REGISTRIES[family]!r}")
        self.family = family
        self.base = base
        self.check = check
        self._entries: dict[str, type] = {}
        _REGISTRIES[family] = self

    def register(self, name: str) -> Callable[[type], type]:
        """Class decorator registering a concrete subclass of ``base`` under ``name``.

        Raises:
            RegistryError: duplicate name, not a subclass of ``base``, or abstract.
        """

        def decorator(cls: type) -> type:
            if not (inspect.isclass(cls) and issubclass(cls, self.base)):
                raise RegistryError(f"{self.family} registry accepts subclasses of {self.base.__name__}; got {cls!r}")
            if inspect.isabstract(cls):
                missing = ", ".join(sorted(cls.__abstractmethods__))
                raise RegistryError(f"cannot register abstract {cls.__name__} as {name!r}: implement {missing}")
            if self.check is not None:
                self.check(cls)
            if name in self._entries:
                raise RegistryError(
                    f"{self.family} name {name!r} is already registered to {self._entries[name].__name__}"
                )
            cls.registry_name = name
            self._entries[name] = cls
            return cls

        return decorator

    def names(self, pattern: str = "*") -> list[str]:
        """Registered names matching a shell-style ``pattern``, sorted."""
        return sorted(n for n in self._entries if fnmatch.fnmatch(n, pattern))

    def get(self, name: str) -> type:
        """The class registered under ``name``.

        Raises:
            UnknownComponentError: no such name (the message lists the known ones).
        """
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownComponentError(
                f"unknown {self.family} {name!r}; expected one of: {', '.join(self.names())}"
            ) from None

    def create(self, name: str, /, **kwargs: Any) -> T:
        """Instantiate the class registered under ``name`` with ``kwargs``.

        Raises:
            UnknownComponentError: unknown name.
            UnknownArgumentError: an unknown keyword (the message names it and lists the accepted ones).
            MissingArgumentError: a required argument is missing.
        """
        return self.get(name)(**kwargs)

    def from_config(self, config: dict[str, Any]) -> T:
        """Rebuild a component from ``to_config()``'s dict (its ``name`` picks the class).

        Raises:
            ConfigError: not a dict with a ``name`` key; UnknownArgumentError: an unknown key.
        """
        if not isinstance(config, dict) or "name" not in config:
            raise ConfigError(f"a {self.family} config must be a dict with a 'name' key; got {config!r}")
        return self.get(config["name"]).from_config(config)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self):
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.family!r}, {self.names()})"
