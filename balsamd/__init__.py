"""balsamd: campaigns of many application runs on HPC clusters, from one file."""

from __future__ import annotations

import importlib
from typing import Any

from balsamd.version import __version__

__all__ = [
    "AppRefused",
    "ApplicationDefinition",
    "BatchJob",
    "DiskFull",
    "Job",
    "JobHandle",
    "JobState",
    "RemoteError",
    "Site",
    "UnreadableResult",
    "UnsupportedResult",
    "__version__",
    "connect",
]

# the public names load their modules on first use: `import balsamd` stays cheap for apps
# and for the command line, which mostly need none of them
_LAZY = {
    "AppRefused": "balsamd.declare",
    "ApplicationDefinition": "balsamd.apps",
    "BatchJob": "balsamd.objects",  # Balsam's names over the one API
    "DiskFull": "balsamd.store.errors",
    "Job": "balsamd.objects",
    "JobHandle": "balsamd.api",
    "JobState": "balsamd.states",
    "RemoteError": "balsamd.results",
    "UnreadableResult": "balsamd.results",
    "UnsupportedResult": "balsamd.results",
    "Site": "balsamd.api",
    "connect": "balsamd.api",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'balsamd' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
