#!/usr/bin/env bash
# The test command: set-up, lint, format check, type check, the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
echo "== ruff"; ruff check .
echo "== ruff format"; ruff format --check .
echo "== mypy"; mypy
echo "== pytest"; python -m pytest "$@"
