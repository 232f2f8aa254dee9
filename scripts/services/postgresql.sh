#!/usr/bin/env bash
# Installs what the events store's PostgreSQL tests need on a Debian machine: the server
# binaries (initdb, postgres) and the unprivileged `postgres` user the Debian package creates,
# which tests/postgres_server.py runs the server as when the tests run as root. No cluster is
# created or started: each test module starts its own server in a temporary directory.
# Idempotent; returns at once when everything is present. Runs as root (or through sudo).
set -euo pipefail

have_server() {
    compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null \
        && compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null \
        && getent passwd postgres >/dev/null
}

if have_server; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    exec sudo --preserve-env=DEBIAN_FRONTEND "$0" "$@"
fi

export DEBIAN_FRONTEND=noninteractive
# the package would otherwise create and start a "main" cluster the tests never use
mkdir -p /etc/postgresql-common/createcluster.d
echo "create_main_cluster = false" >/etc/postgresql-common/createcluster.d/hearthwatch-tests.conf
apt-get update -qq
apt-get install -y -qq --no-install-recommends postgresql >/dev/null

have_server || { echo "postgresql installed, but initdb/postgres or the postgres user is missing" >&2; exit 1; }
echo "PostgreSQL server binaries: $(dirname "$(compgen -G '/usr/lib/postgresql/*/bin/initdb' | sort -V | tail -n 1)")"
