"""Where a run computes: ``device: cpu | cuda | auto``."""

from __future__ import annotations

import torch

from .errors import TicketscopeError


def resolve_device(name: str) -> torch.device:
    """The torch device a config's ``device`` names (``auto``: CUDA when present); one clear error for
    ``cuda`` on a machine without a GPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise TicketscopeError("device = cuda but no CUDA GPU is available; set device: cpu (or auto)")
    return torch.device(name)
