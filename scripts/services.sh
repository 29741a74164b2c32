#!/usr/bin/env bash
# What the tests need besides Python packages: PostgreSQL binaries (the tests start their own
# servers) and a single-node Slurm.  Installs and starts them when run as root; elsewhere it
# says what is missing (the tests of those components then skip, except in CI where they fail).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "services.sh: $*" >&2; }

have_postgres() {
  command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1
}

if [ "$(id -u)" != 0 ]; then
  have_postgres || say "PostgreSQL server binaries are missing (install the postgresql package)"
  command -v sbatch >/dev/null 2>&1 || say "Slurm is missing (run scripts/slurm.sh start as root)"
  exit 0
fi

if ! have_postgres; then
  say "installing PostgreSQL (log: /tmp/balsamd-apt.log)"
  export DEBIAN_FRONTEND=noninteractive
  { apt-get update -q && apt-get install -y -q --no-install-recommends postgresql; } >/tmp/balsamd-apt.log 2>&1 \
    || { tail -20 /tmp/balsamd-apt.log >&2; say "installing PostgreSQL failed"; exit 1; }
fi

bash scripts/slurm.sh start
