#!/usr/bin/env bash
# Create ./.venv (once) and install ticketscope into it with the libraries it was tested with:
# every dependency from requirements.lock, pinned and hash-checked (scripts/lock.sh makes it),
# then torch, pinned explicitly: an unpinned torch pulls a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.ticketscope-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ requirements.lock -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q --require-hashes -r requirements.lock
  .venv/bin/python -m pip install -q "torch==2.13.0"
  .venv/bin/python -m pip install -q --no-deps -e .
  touch "$stamp"
fi
