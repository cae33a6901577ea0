#!/usr/bin/env bash
# Before the first `docker compose up` (and after changing the community or the agents): broker accounts,
# ACL, secrets and TLS certificates under deploy/generated/, owned by the containers' users. Needs root for chown.
set -euo pipefail
cd "$(dirname "$0")/.."
out=deploy/generated
[ -x .venv/bin/commhub ] || ./scripts/setup.sh
# Accounts come from the community and the agents; the config's secrets play no part here, but it must load.
export COMMHUB_INFLUX_TOKEN="not-needed-to-provision" COMMHUB_ALERTS_DB_URL="not-needed-to-provision"
.venv/bin/commhub mqtt provision --config deploy/compose.yaml --out "$out/mqtt" --simulator
.venv/bin/commhub certs init --config deploy/compose.yaml --out "$out/certs" --simulator \
  --broker-name mosquitto --broker-name localhost --broker-name 127.0.0.1
# mosquitto (uid 1883 in eclipse-mosquitto) reads the password file, the ACL and its key; commhub (uid 10001)
# reads the account secrets and client keys. Each container mounts only its own account's files.
chown 1883:1883 "$out/mqtt/passwd" "$out/mqtt/acl" "$out/certs/broker.key"
chown 10001:10001 "$out"/mqtt/accounts/*.secret "$out"/certs/clients/*.key
echo "deploy/init.sh: accounts and certificates in $out"
