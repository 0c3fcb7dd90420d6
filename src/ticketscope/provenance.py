"""Which code and machine produced a result: package version and commit, library versions, device, threads."""

from __future__ import annotations

import os
import platform
import subprocess
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

import torch


@lru_cache(maxsize=1)
def _commit() -> str | None:
    """HEAD of the git checkout this package runs from (``+dirty`` with local changes); None if not a checkout."""
    here = Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() + ("+dirty" if dirty else "")


@lru_cache(maxsize=None)
def _version(package: str) -> str | None:
    """The installed version (read once per process: parsing package metadata costs ~2 ms a call)."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def device_name(device: torch.device | str) -> str:
    """The GPU's name for a CUDA device, else the CPU's architecture and processor string."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.machine()} {platform.processor() or 'cpu'}".strip()


@lru_cache(maxsize=1)
def cpu_name() -> str:
    """The CPU's model name with its vendor, family and model numbers (two generations may share a name)."""
    info: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            info.setdefault(key.strip(), value.strip())
    except OSError:
        return platform.processor() or platform.machine()
    avx512 = ", AVX-512" if "avx512f" in info.get("flags", "").split() else ""
    return (f"{info.get('model name', platform.machine())} ({info.get('vendor_id', '?')} family "
            f"{info.get('cpu family', '?')} model {info.get('model', '?')}{avx512}, {len(_cpus())} cores)")


def _cpus() -> list[int]:
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))


def provenance(device: torch.device | str = "cpu") -> dict[str, Any]:
    """A JSON-ready record of the code, libraries, device and thread count computing right now."""
    return {
        "ticketscope": _version("ticketscope"),
        "commit": _commit(),
        "python": platform.python_version(),
        **{lib: _version(lib) for lib in ("torch", "numpy", "scipy", "pandas")},
        "device": device_name(device),
        "cpu": cpu_name(),
        "threads": torch.get_num_threads(),
    }
