"""The machine a stored digest of floating-point output holds on, and the check that uses it.

Bits of floating-point output are a same-machine promise: another CPU (even another generation sold
under the same name, or the same torch picking other kernels for other vector extensions) rounds its
transforms and GEMMs differently in the last bits. So a test that stores a digest of such output
stores :func:`machine` beside it, compares the digest only where the fingerprint is the same, and
elsewhere compares stored values with a stated tolerance (:func:`check_stored`). Config digests (a
hash of config text) are no floating-point output and need none of this.

Used by ``tests/data/test_stream.py`` and ``tests/golden`` (whose ``fingerprint.py`` also runs as a
script, so this module imports nothing from the test suite).
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any, Callable

import numpy as np


def machine() -> dict[str, Any]:
    """What a bit-identity promise depends on: CPU model and micro-architecture, torch build, thread count.

    The model name alone is not enough ("AMD EPYC" names every generation, whose kernels differ in the last
    bits), so the CPU vendor, family, model and vector extensions (which kernels torch may pick) are part of it.
    """
    import torch

    info: dict[str, str] = {}
    if Path("/proc/cpuinfo").exists():
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            info.setdefault(key.strip(), value.strip())
    simd = sorted(f for f in info.get("flags", "").split() if f.startswith(("avx", "fma", "amx", "sse")))
    return {"cpu": info.get("model name", platform.processor()), "machine": platform.machine(),
            "family": f"{info.get('vendor_id', '')} {info.get('cpu family', '')}/{info.get('model', '')}",
            "simd": " ".join(simd), "torch": torch.__version__, "threads": 1}


def check_stored(stored_on: dict[str, Any], digest: str, got_digest: Callable[[], str],
                 values: Any, got_values: Callable[[], Any], rtol: float, atol: float,
                 here: dict[str, Any] | None = None) -> str:
    """Compare output against what was stored on the machine ``stored_on``: on that machine (``here``,
    default :func:`machine`) its ``digest`` bit for bit, elsewhere its stored ``values`` within ``rtol`` and
    ``atol``. Returns which was checked, ``"digest"`` or ``"values"``; a mismatch raises AssertionError."""
    if (machine() if here is None else here) == stored_on:
        got = got_digest()
        assert got == digest, f"digest {got} differs from {digest}, stored on this machine"
        return "digest"
    np.testing.assert_allclose(np.asarray(got_values(), dtype=float), np.asarray(values, dtype=float),
                               rtol=rtol, atol=atol,
                               err_msg=f"stored values (taken on {stored_on}) differ beyond rtol {rtol}, atol {atol}")
    return "values"
