"""One registry per kind of component (model, optimizer, scheduler, dataset).

Registering a builder under a name records its options dataclass beside it; the entrypoints'
registration step (hydra_setup.setup_hydra) stores every schema in Hydra's ConfigStore (as
`<group>_<name>_schema`, which the option's YAML file names in its defaults list), so the
name is written once and the YAML file, the schema and the code cannot drift. Builders
receive a typed options object whose `check` has already passed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from cifar_exp.errors import ConfigError

T = TypeVar("T", bound=Callable[..., Any])
S = TypeVar("S")


# Facts about a key beside its type, kept as its schema field's metadata (see `option`);
# config.keys_with() lists the keys that have one.
PLUMBING = "plumbing"  # where files go, where or how visibly it runs: not in run names or HParams
RESUMABLE = "resumable"  # a resume may change it: the run still ends where it would have
STARTUP = "startup"  # how this attempt starts: not stored in checkpoints, not compared on resume
COMPARED = "compared"  # a column of TensorBoard's HParams in every run


def option(
    default: Any = MISSING,
    *,
    plumbing: bool = False,
    resumable: bool = False,
    startup: bool = False,
    compared: bool = False,
) -> Any:
    """A schema field with its default and the facts that hold for its key."""
    facts = {PLUMBING: plumbing, RESUMABLE: resumable, STARTUP: startup, COMPARED: compared}
    return field(default=default, metadata={fact: True for fact, holds in facts.items() if holds})


def require(ok: bool, key: str, expectation: str, value: Any) -> None:
    """Refuse a value that cannot work; `key` is relative to its group (typed_options adds it)."""
    if not ok:
        shown = list(value) if isinstance(value, list | tuple) else repr(value)
        raise ConfigError(f"{key} must be {expectation}, got {shown}")


@dataclass
class Options:
    """Base of every component's options; the registry fills in `name`."""

    name: str = option(compared=True)

    def check(self) -> None:
        """Raise ConfigError (through `require`) for a value no type can rule out."""


def typed_options(group: str, schema: type[S], node: Mapping[str, Any] | DictConfig) -> S:
    """`node` (a composed group, or one read back from a stored plain-YAML config) as a
    checked `schema` object; any bad value ends in one ConfigError naming `group.key`."""
    plain = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node
    try:
        options = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), plain))
    except OmegaConfBaseException as err:
        raise ConfigError(f"{group}.{err.full_key}: {err.msg.splitlines()[0]}") from None
    try:
        options.check()
    except ConfigError as err:
        raise ConfigError(f"{group}.{err}") from None
    return options


class Registry:
    """Maps names to (builder, options dataclass) for one config group."""

    def __init__(self, group: str) -> None:
        self.group = group
        self._entries: dict[str, tuple[Callable[..., Any], type[Options]]] = {}

    def register(self, name: str, options: type[Options]) -> Callable[[T], T]:
        """A decorator that registers `builder(options, *args)` under `name`, and stores
        `options` in Hydra's ConfigStore as `<group>_<name>_schema`."""

        def add(builder: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.group} '{name}' is already registered")
            self._entries[name] = (builder, options)
            return builder

        return add

    def store_schemas(self) -> None:
        """Put each option's schema in Hydra's ConfigStore as `<group>_<name>_schema`, which
        its YAML file names in its defaults list (the entrypoints' registration step)."""
        for name, (_, options) in self._entries.items():
            node = OmegaConf.structured(options)
            node.name = name
            # Outside any group, so `--help` lists only the options users pick from.
            ConfigStore.instance().store(name=f"{self.group}_{name}_schema", node=node)

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._entries)

    def schemas(self) -> list[type[Options]]:
        return [schema for _, schema in self._entries.values()]

    def schema(self, name: str) -> type[Options]:
        """The options dataclass registered under `name`."""
        return self._entry(name)[1]

    def _entry(self, name: str) -> tuple[Callable[..., Any], type[Options]]:
        if name not in self._entries:
            known = ", ".join(self.names())
            raise ConfigError(f"unknown {self.group} '{name}'; registered {self.group}s: {known}")
        return self._entries[name]

    def options(self, node: Mapping[str, Any] | DictConfig) -> Options:
        """The checked, typed options of the component `node` names."""
        _, schema = self._entry(node["name"])
        return typed_options(self.group, schema, node)

    def build(self, node: Options | Mapping[str, Any] | DictConfig, *args: Any) -> Any:
        """The component `node` names, built from its checked options (and `args`)."""
        options = node if isinstance(node, Options) else self.options(node)
        builder, _ = self._entry(options.name)
        return builder(options, *args)
