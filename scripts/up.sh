#!/usr/bin/env bash
# The main job: set up, then start broker, InfluxDB, hub, API and a simulated community on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
exec .venv/bin/commhub up "$@"
