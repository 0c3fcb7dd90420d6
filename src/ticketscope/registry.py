"""Named plug-ins (data sets, pruning rules) with their parameter models.

A registry maps a name to what it names, to the pydantic model of its own parameters (or None) and,
optionally, to what the entry says of itself (a data set: its capabilities under a config), which the
config schema asks instead of naming entries.
It is generic and imports neither ``data`` nor ``pruning``: those modules fill it when they are
imported (built-ins, then the plug-ins of ``$TICKETSCOPE_PLUGINS``), and a look-up imports its
provider first, so the config schema can validate names without depending on the layers above it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from .plugins import plugin_hint


class Registry:
    """Names -> objects and params models, filled by ``provider`` (a module path) on first look-up."""

    def __init__(self, what: str, provider: str) -> None:
        self.what, self.provider = what, provider
        self.objects: dict[str, Any] = {}
        self.params: dict[str, type[BaseModel] | None] = {}
        self.describers: dict[str, Callable[..., Any]] = {}

    def add(self, name: str, obj: Any, params: type[BaseModel] | None = None,
            describe: Callable[..., Any] | None = None) -> None:
        """Register ``obj`` under ``name``; ``describe(*args)``, if given, is what :meth:`describe` answers."""
        self.objects[name], self.params[name] = obj, params
        if describe is None:
            self.describers.pop(name, None)
        else:
            self.describers[name] = describe

    def _load(self) -> None:
        importlib.import_module(self.provider)

    def require(self, name: str) -> str:
        """``name`` if registered, else a ValueError listing the registered names."""
        self._load()
        if name not in self.objects:
            raise ValueError(f"no {self.what} named {name!r}; the registered {self.what}s are "
                             f"{', '.join(sorted(self.objects))}{plugin_hint(self.what)}")
        return name

    def params_model(self, name: str) -> type[BaseModel] | None:
        self._load()
        return self.params.get(name)

    def describe(self, name: str, *args: Any) -> Any:
        """What the entry ``name`` says of itself given ``args`` (for data sets: its capabilities under a
        data config), from the ``describe`` it was registered with; None if it has none."""
        self._load()
        describe = self.describers.get(name)
        return None if describe is None else describe(*args)


DATASETS = Registry("data set", "ticketscope.data")
RULES = Registry("pruning rule", "ticketscope.pruning")
