"""Rounds of a balsamd campaign under random kill -9 of the daemon, launchers and PostgreSQL,
each checked for lost jobs, concurrent runs, runs after the end, duplicated events and
disagreements with central.  See docs/reliability.md, "Chaos".

    python scripts/chaos.py [--rounds N] [--jobs N] [--seed S] [--json | --markdown]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.chaos.runner import main

if __name__ == "__main__":
    sys.exit(main())
