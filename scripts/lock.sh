#!/usr/bin/env bash
# Regenerate requirements.lock: every dependency of ticketscope (with the ray and test extras)
# pinned to one version with the sha256 of each of its files, for Python 3.11 and newer on any
# platform. torch is left out (scripts/bootstrap.sh installs it as torch==2.13.0, the CPU build
# where one is on disk): its PyPI wheels differ by platform and CUDA. The resolution uses the CPU
# build's dependencies, so no CUDA libraries enter the lock.
#   scripts/lock.sh   # needs `uv` on PATH (pip install uv) and the package registries
# It keeps the pins already in requirements.lock where it can: delete the file to upgrade all.
set -euo pipefail
cd "$(dirname "$0")/.."
cpu_torch=${TORCH_CPU_SOURCE:---extra-index-url=https://download.pytorch.org/whl/cpu}
[ -d /opt/wheels ] && cpu_torch=--find-links=/opt/wheels
uv pip compile -q pyproject.toml --extra ray --extra test --universal --python-version 3.11 \
  --generate-hashes --no-emit-package torch --override <(echo "torch==2.13.0+cpu") \
  "$cpu_torch" --custom-compile-command scripts/lock.sh -o requirements.lock
