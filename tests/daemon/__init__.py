"""Tests of the daemon, run as users run it: `balsamd start` in a subprocess."""
