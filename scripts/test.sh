#!/usr/bin/env bash
# Set up, lint, type-check and run every test. The fixtures start their own mosquitto and influxd on free
# loopback ports with temporary data directories.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/mypy
exec .venv/bin/pytest -q "$@"
