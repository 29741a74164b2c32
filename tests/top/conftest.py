"""The CLI tests' site and ``balsamd`` runner, for the command's tests here."""

from tests.cli.conftest import _no_outside_site, hello, hold, run, run_to, site_path  # noqa: F401
