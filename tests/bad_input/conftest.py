"""The central PostgreSQL server of the sync tests, for the remote API's cases."""

from tests.sync.conftest import pg_server

__all__ = ["pg_server"]
