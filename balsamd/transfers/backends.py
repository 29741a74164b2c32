"""The backend that moves a location's files, by the location's scheme."""

from __future__ import annotations

from pathlib import Path

from balsamd.config import TransferSettings
from balsamd.transfers.backend import Backend
from balsamd.transfers.globus import globus_backend
from balsamd.transfers.local import LocalBackend
from balsamd.transfers.locations import Location
from balsamd.transfers.rsync import RsyncBackend
from balsamd.transfers.sshmux import control_dir, multiplex_options


def backend_for(location: Location, settings: TransferSettings, site_dir: Path) -> Backend:
    """The backend for ``location``: file:// on this host, rsync:// over ssh, globus:// through
    Globus Transfer (``site_dir`` holds its login)."""
    if location.scheme == "file":
        return LocalBackend(settings.file_method)
    if location.scheme == "rsync":
        shared = control_dir(site_dir) if settings.ssh_multiplex else None
        ssh = [*settings.ssh, *multiplex_options(shared)] if shared else settings.ssh
        return RsyncBackend(ssh, settings.io_timeout_s, shared=shared is not None)
    return globus_backend(settings, site_dir)
