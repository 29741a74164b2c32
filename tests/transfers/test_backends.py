"""A location's scheme picks the backend that moves its files."""

from __future__ import annotations

from pathlib import Path

from balsamd.config import TransferSettings
from balsamd.transfers.backends import backend_for
from balsamd.transfers.globus import GlobusBackend
from balsamd.transfers.local import LocalBackend
from balsamd.transfers.locations import parse_location
from balsamd.transfers.rsync import RsyncBackend


def test_each_scheme_gets_its_backend(tmp_path: Path) -> None:
    far, archive = parse_location("file:///data/far"), parse_location("rsync://me@dtn.example.org/archive")

    assert isinstance(backend_for(far, TransferSettings(), tmp_path), LocalBackend)
    assert isinstance(backend_for(archive, TransferSettings(), tmp_path), RsyncBackend)


def test_a_globus_location_gets_the_globus_backend(tmp_path: Path) -> None:
    location = parse_location("globus://0a1b2c3d-0000-1111-2222-333344445555/eagle/proj")

    assert isinstance(backend_for(location, TransferSettings(), tmp_path), GlobusBackend)
