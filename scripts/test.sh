#!/usr/bin/env bash
# The test suite, with every component it needs installed and started by the project itself.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export PATH="$PWD/.venv/bin:$PATH"
.venv/bin/ruff check balsamd tests benchmarks scripts
exec .venv/bin/python -m pytest "$@"
