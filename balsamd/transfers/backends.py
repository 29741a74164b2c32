"""The backend that moves a location's files, by the location's scheme."""

from __future__ import annotations

from pathlib import Path

from balsamd.config import TransferSettings
from balsamd.transfers.backend import Backend, TransferError
from balsamd.transfers.local import LocalBackend
from balsamd.transfers.locations import Location
from balsamd.transfers.rsync import RsyncBackend


def backend_for(location: Location, settings: TransferSettings, site_dir: Path) -> Backend:
    """The backend for ``location``: file:// on this host, rsync:// over ssh; TransferError for
    a scheme this build cannot move (``site_dir`` holds what a backend keeps between tasks)."""
    if location.scheme == "file":
        return LocalBackend(settings.file_method)
    if location.scheme == "rsync":
        return RsyncBackend(settings.ssh)
    raise TransferError(f"this balsamd has no Globus backend, so items of globus://{location.endpoint} locations "
                        "cannot move; use a build that includes it, or a file:// or rsync:// location")  # fmt: skip
