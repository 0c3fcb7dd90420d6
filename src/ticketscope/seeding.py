"""Stable seed derivation: the same parts give the same seed on every machine and Python."""

from __future__ import annotations

import hashlib

import torch


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from any printable parts, via SHA-256 of their repr (stable across runs)."""
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def generator(*parts: object, device: str | torch.device = "cpu") -> torch.Generator:
    """A torch generator seeded with ``derive_seed(*parts)``."""
    g = torch.Generator(device=device)
    g.manual_seed(derive_seed(*parts))
    return g
