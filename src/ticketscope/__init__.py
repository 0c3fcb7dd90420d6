"""ticketscope: how iterative magnitude pruning makes fully connected networks grow local receptive fields."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["open_run", "open_sweep"]


def __getattr__(name: str) -> Any:
    """``ticketscope.open_run`` / ``open_sweep`` without importing torch when only the CLI's help is asked for."""
    if name in __all__:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'ticketscope' has no attribute {name!r}")
