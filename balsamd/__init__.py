"""balsamd: campaigns of many application runs on HPC clusters, from one file."""

from balsamd.api import JobHandle, Site, connect
from balsamd.apps import ApplicationDefinition
from balsamd.states import JobState
from balsamd.version import __version__

__all__ = ["ApplicationDefinition", "JobHandle", "JobState", "Site", "__version__", "connect"]
