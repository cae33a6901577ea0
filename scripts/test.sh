#!/usr/bin/env bash
# Set up, lint, type-check and run every test. The fixtures start their own mosquitto and influxd on free
# loopback ports with temporary data directories.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/mypy
# Three workers on two cores: most tests wait on real services, not the CPU. Files stay whole on one worker
# (their module fixtures start services once); pass -n 0 to run in one process.
exec .venv/bin/pytest -q -n 3 --dist loadfile "$@"
