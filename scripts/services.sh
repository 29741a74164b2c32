#!/usr/bin/env bash
# What the tests need besides Python packages: PostgreSQL binaries (the tests start their own
# servers), rsync with an OpenSSH server and client (the transfer tests start their own sshd on
# 127.0.0.1), tmux (the live view's test runs `balsamd top` in a tmux server of its own) and a
# single-node Slurm.  Installs and starts them when run as root; elsewhere it says what is missing
# (the tests of those components then skip, except in CI where they fail).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "services.sh: $*" >&2; }

have_postgres() {
  command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1
}

# the Debian packages missing, with what each provides for the tests
missing=()
have_postgres || missing+=("postgresql: PostgreSQL server binaries")
command -v rsync >/dev/null 2>&1 || missing+=("rsync: rsync")
# sshd lives in /usr/sbin, which a user's PATH may lack
[ -x /usr/sbin/sshd ] || command -v sshd >/dev/null 2>&1 || missing+=("openssh-server: sshd")
{ command -v ssh && command -v ssh-keygen; } >/dev/null 2>&1 || missing+=("openssh-client: ssh and ssh-keygen")
command -v tmux >/dev/null 2>&1 || missing+=("tmux: tmux")

if [ "$(id -u)" != 0 ]; then
  for m in "${missing[@]}"; do say "${m#*: } missing (install the ${m%%:*} package)"; done
  command -v sbatch >/dev/null 2>&1 || say "Slurm is missing (run scripts/slurm.sh start as root)"
  exit 0
fi

if [ ${#missing[@]} -gt 0 ]; then
  packages=("${missing[@]%%:*}")
  say "installing ${packages[*]} (log: /tmp/balsamd-apt.log)"
  # the tests start their own sshd on 127.0.0.1; the package must not start one on every address
  # (policy-rc.d answering 101 is Debian's way to keep packages from starting services)
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 0755 /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  export DEBIAN_FRONTEND=noninteractive
  { apt-get update -q && apt-get install -y -q --no-install-recommends "${packages[@]}"; } >/tmp/balsamd-apt.log 2>&1 \
    || { tail -20 /tmp/balsamd-apt.log >&2; say "installing ${packages[*]} failed"; exit 1; }
fi

bash scripts/slurm.sh start
