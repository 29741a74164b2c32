#!/usr/bin/env bash
# Create or refresh the project's virtual environment (.venv) with balsamd and its test
# dependencies.  Safe to run again: it reinstalls only when pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")/.."

find_python() {
  for candidate in python3.13 python3.12 python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      command -v "$candidate"; return 0
    fi
  done
  echo "balsamd needs Python 3.11 or newer; none found on PATH" >&2
  return 1
}

stamp=.venv/.installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ -x .venv/bin/python ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
python=$(find_python)
[ -x .venv/bin/python ] || "$python" -m venv .venv
echo "installing balsamd and its test tools into .venv (log: .venv/install.log)" >&2
if ! { .venv/bin/python -m pip install --upgrade pip &&
       .venv/bin/python -m pip install -e '.[test]'; } >.venv/install.log 2>&1; then
  tail -30 .venv/install.log >&2
  echo "installing balsamd into .venv failed; the whole log is .venv/install.log" >&2
  exit 1
fi
.venv/bin/python -c 'import balsamd, apsw, msgspec, anyio, click, mpi4py, psycopg' \
  || { echo "balsamd is installed but does not import; see .venv/install.log" >&2; exit 1; }
echo "$want" > "$stamp"
