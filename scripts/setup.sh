#!/usr/bin/env bash
# Create .venv with the pinned dependencies and the project (editable).
# Idempotent: does nothing when requirements.lock and pyproject.toml are unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "setup: Python 3.11 or newer is needed ($PYTHON is $("$PYTHON" --version 2>&1))" >&2
    exit 1
fi
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv

stamp=.venv/.mtlb-installed
want=$(cat requirements.lock pyproject.toml | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "setup: installing dependencies into .venv"
    .venv/bin/python -m pip install -q --upgrade pip
    # torch first, pinned: an unpinned torch pulled in by another package is a
    # several-GB CUDA build; this one is the CPU build.
    # --no-compile: byte-compiling every installed module took 38 of the set-up's 69 s;
    # Python compiles (and caches) only the modules a process imports, the first time.
    .venv/bin/python -m pip install -q --no-compile torch==2.13.0
    .venv/bin/python -m pip install -q --no-compile -r requirements.lock
    .venv/bin/python -m pip install -q --no-deps -e .
    echo "$want" > "$stamp"
fi
