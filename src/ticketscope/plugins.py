"""Users' own pruning rules and data sets: files or modules named in ``$TICKETSCOPE_PLUGINS``.

``TICKETSCOPE_PLUGINS=my_rules.py:my_package.data`` (``os.pathsep``-separated ``.py`` files or module
names) is imported once per process, when :mod:`ticketscope.pruning` or :mod:`ticketscope.data` is
first imported, so their ``@register`` / ``@register_dataset`` calls run in the command line and in
every sweep worker (workers inherit the environment).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from pathlib import Path

from pydantic import BaseModel

from .errors import TicketscopeError

PLUGINS_ENV = "TICKETSCOPE_PLUGINS"
_loaded = False


def plugin_hint(what: str) -> str:
    """What to say after "no ``what`` named X": where a plug-in's names come from, and what this process
    loaded (``$TICKETSCOPE_PLUGINS``, often unset in a new shell or a worker started without it)."""
    given = os.environ.get(PLUGINS_ENV, "")
    if not given:
        return f"; a plug-in's {what} needs its file or module named in ${PLUGINS_ENV}, which is unset here"
    return f"; ${PLUGINS_ENV} ({given}) registered no {what} by that name"


def load_plugins() -> None:
    """Import every plugin of $TICKETSCOPE_PLUGINS once (later calls do nothing), or raise one clear error."""
    global _loaded
    if _loaded:
        return
    _loaded = True  # before importing: a plugin importing ticketscope.pruning must not recurse
    for item in filter(None, os.environ.get(PLUGINS_ENV, "").split(os.pathsep)):
        try:
            if item.endswith(".py"):
                spec = importlib.util.spec_from_file_location(f"ticketscope_plugin_{Path(item).stem}", item)
                if spec is None or spec.loader is None or not Path(item).is_file():
                    raise FileNotFoundError(item)
                spec.loader.exec_module(importlib.util.module_from_spec(spec))
            else:
                importlib.import_module(item)
        except (ImportError, FileNotFoundError) as e:
            raise TicketscopeError(f"TICKETSCOPE_PLUGINS: cannot import {item!r} ({e}); give existing .py files "
                                   "or importable module names separated by ':'") from None


def check_params_model(owner: str, model: type[BaseModel] | None) -> None:
    """Raise a ValueError unless ``model``, a rule's or data set's params model, is None or a pydantic
    model that refuses unknown keys (like :class:`ticketscope.config.Params`)."""
    if model is not None and not (isinstance(model, type) and issubclass(model, BaseModel)
                                  and model.model_config.get("extra") == "forbid"):
        raise ValueError(f"{owner}: params must be a pydantic model that forbids unknown keys "
                         "(subclass ticketscope.config.Params)")
