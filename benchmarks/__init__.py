"""balsamd benchmarks: run them with ``python benchmarks/run.py`` (see benchmarks/common.py)."""
