"""Named plug-ins (data sets, pruning rules) with their parameter models.

A registry maps a name to what it names and to the pydantic model of its own parameters (or None).
It is generic and imports neither ``data`` nor ``pruning``: those modules fill it when they are
imported (built-ins, then the plug-ins of ``$TICKETSCOPE_PLUGINS``), and a look-up imports its
provider first, so the config schema can validate names without depending on the layers above it.
"""

from __future__ import annotations

import importlib
from typing import Any

from pydantic import BaseModel

from .plugins import plugin_hint


class Registry:
    """Names -> objects and params models, filled by ``provider`` (a module path) on first look-up."""

    def __init__(self, what: str, provider: str) -> None:
        self.what, self.provider = what, provider
        self.objects: dict[str, Any] = {}
        self.params: dict[str, type[BaseModel] | None] = {}

    def add(self, name: str, obj: Any, params: type[BaseModel] | None = None) -> None:
        self.objects[name], self.params[name] = obj, params

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


DATASETS = Registry("data set", "ticketscope.data")
RULES = Registry("pruning rule", "ticketscope.pruning")
