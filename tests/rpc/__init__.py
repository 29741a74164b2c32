"""Tests of the launcher/CLI <-> daemon protocol, its server and its client."""
