"""Whether a text is a PostgreSQL connection string (DSN), checked without PostgreSQL's client.

A DSN reaches balsamd from ``site init --central``, ``[sync] central`` in settings.toml and the
``central`` commands.  libpq takes two forms: a URI (``postgresql://user@host:5432/db``) and
keyword/value pairs (``host=db.example.org dbname=balsamd user=me``).  Anything else would be
found out only when a connection is tried, as an error about something else (``missing "="
after "hello" in connection info string``), or, written into settings.toml unescaped, break the
file.  The checks here are what libpq's parser needs; whether the server exists is for the
connection to find out.  A DSN may hold a password, so problems say where, never quote it.
"""

from __future__ import annotations

import re

URI_SCHEMES = ("postgresql://", "postgres://")
# libpq's connection keywords (PostgreSQL 16's "Parameter Key Words"); libpq refuses any other
_KEYWORD_TEXT = """
    host hostaddr port dbname user password passfile require_auth channel_binding connect_timeout
    client_encoding options application_name fallback_application_name keepalives keepalives_idle
    keepalives_interval keepalives_count tcp_user_timeout replication gssencmode sslmode requiressl
    sslcompression sslcert sslkey sslpassword sslcertmode sslrootcert sslcrl sslcrldir sslsni requirepeer
    ssl_min_protocol_version ssl_max_protocol_version krbsrvname gsslib gssdelegation service
    target_session_attrs load_balance_hosts sslnegotiation
"""
KEYWORDS = frozenset(_KEYWORD_TEXT.split())
FORMS = "postgresql://USER@HOST:PORT/DBNAME, or key=value pairs such as 'host=HOST dbname=DBNAME user=USER'"
MAX_LENGTH = 4096
_PAIR = re.compile(r"\s*([A-Za-z_]+)\s*=\s*('(?:[^'\\]|\\.)*'|(?:[^\s']\S*)?)")


def dsn_problem(text: str) -> str | None:
    """What keeps ``text`` from being a DSN libpq parses (None when nothing does)."""
    if not text.strip():
        return f"it is empty; give {FORMS}"
    if len(text) > MAX_LENGTH:
        return f"it is {len(text)} characters long; a DSN takes at most {MAX_LENGTH}"
    bad = next((n for n, c in enumerate(text) if ord(c) < 32 or ord(c) == 127), None)
    if bad is not None:
        return f"it contains a control character (at character {bad + 1}); give it on one line"
    if text.startswith(URI_SCHEMES):
        if any(c.isspace() for c in text):
            return "a postgresql:// DSN has no spaces; percent-encode them (%20)"
        return None
    if "://" in text:
        return f"{text.split('://', 1)[0]!r:.30} is not a PostgreSQL URI scheme; give {FORMS}"
    at = 0
    while at < len(text.rstrip()):
        match = _PAIR.match(text, at)
        if not match or match.end() == at:
            return f"it is not a DSN (no key=value at character {at + 1}); give {FORMS}"
        if match.group(1) not in KEYWORDS:
            return (
                f"{match.group(1)!r:.40} is not a connection keyword of PostgreSQL; use those it knows, such as host, "
                "port, dbname and user"
            )
        at = match.end()
        if at < len(text) and text[at] == "'":
            return f"a quoted value is never closed (at character {at + 1}); end it with '"
        if at < len(text) and not text[at].isspace():
            return f"key=value pairs must be separated by spaces (at character {at + 1}); give {FORMS}"
    return None
