#!/usr/bin/env bash
# The main job: a demo campaign on a fresh local site (no central database needed).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export PATH="$PWD/.venv/bin:$PATH"   # the mpich wheel's mpiexec for the MPI job
exec .venv/bin/balsamd demo "$@"
