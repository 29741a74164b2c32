#!/usr/bin/env bash
# The test suite, with every component it needs installed and started by the project itself:
# lint, format and type checks first, then pytest (arguments go to pytest).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
if [ "${CI:-}" = true ]; then
  bash scripts/services.sh
else
  bash scripts/services.sh || echo "test.sh: some services could not be started; their tests will skip" >&2
fi
export PATH="$PWD/.venv/bin:$PATH"
.venv/bin/ruff check balsamd tests benchmarks scripts
.venv/bin/ruff format --check balsamd tests benchmarks scripts
.venv/bin/mypy balsamd
exec .venv/bin/python -m pytest "$@"
