"""A tiny name -> constructor registry: models and data sets register themselves by name."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from cifar_exp.errors import ConfigError

T = TypeVar("T", bound=Callable[..., Any])


class Registry:
    """Maps names to constructors; `build` checks the options against the signature."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Callable[..., Any]] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(constructor: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} '{name}' is already registered")
            self._entries[name] = constructor
            return constructor

        return add

    def names(self) -> list[str]:
        return sorted(self._entries)

    def get(self, name: str) -> Callable[..., Any]:
        if name not in self._entries:
            known = ", ".join(self.names())
            raise ConfigError(f"unknown {self.kind} '{name}'; registered {self.kind}s: {known}")
        return self._entries[name]

    def build(self, name: str, **options: Any) -> Any:
        constructor = self.get(name)
        accepted = inspect.signature(constructor).parameters
        unknown = sorted(set(options) - set(accepted))
        if unknown:
            takes = ", ".join(accepted) or "no options"
            raise ConfigError(
                f"{self.kind} '{name}' does not take option(s) {', '.join(unknown)}; "
                f"it takes: {takes}"
            )
        return constructor(**options)
