"""Transfer locations: a name in ``[transfers.locations]`` for a base directory somewhere.

``file:///base``, ``rsync://user@host[:port]/base`` (over ssh) or ``globus://ENDPOINT/base``.  A
job names a location and a path, and the path is always taken inside the location's base
directory: whoever creates a job (a central user included) reaches nothing else of the owner's
files there.  Pure functions; each problem says what to give.
"""

from __future__ import annotations

import posixpath
import re
import urllib.parse
from typing import Literal

import msgspec

Scheme = Literal["file", "rsync", "globus"]
SCHEMES: tuple[Scheme, ...] = ("file", "rsync", "globus")
# a location's name: the part of a job's item before ':', and a key of settings.toml
NAME = r"[A-Za-z][A-Za-z0-9_-]{0,63}"
NAME_RE = re.compile(NAME)
MAX_PATH = 4096  # characters of a path, as PATH_MAX
_USER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")
_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_FORMS = '"file:///base/dir", "rsync://user@host/base/dir" (optionally host:port) or "globus://ENDPOINT_UUID/base/dir"'


class Location(msgspec.Struct, kw_only=True, frozen=True):
    """A location of settings.toml, parsed: where its base directory is and how it is reached."""

    scheme: Scheme
    base: str  # absolute and normalized
    host: str = ""  # rsync
    user: str = ""  # rsync
    port: int | None = None  # rsync: ssh's port, None for its default
    endpoint: str = ""  # globus: the collection's UUID


class Place(msgspec.Struct, kw_only=True, frozen=True):
    """A concrete source or destination: a location's way there and a path inside its base."""

    location: Location
    path: str


class LocationError(ValueError):
    """A location that cannot be used; the message says what to give."""


def parse_location(url: str) -> Location:
    """The Location ``url`` names, or LocationError saying what is wrong and what to give."""
    if not isinstance(url, str) or "\0" in url or any(ord(c) < 32 or ord(c) == 127 for c in url):
        raise LocationError(f"{url!r:.80} is not a location; give a URL such as {_FORMS}")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in SCHEMES:
        raise LocationError(f"scheme {parts.scheme!r} is not one balsamd moves files with; give {_FORMS}")
    if parts.query or parts.fragment:
        raise LocationError(f"{url!r} has a query or fragment ('?' or '#'); give a plain URL: {_FORMS}")
    base = urllib.parse.unquote(parts.path)
    problem = base_problem(base)
    if problem:
        raise LocationError(problem)
    base = "/" + posixpath.normpath(base).lstrip("/")  # POSIX keeps a leading "//"; one will do
    if parts.scheme == "file":
        if parts.netloc:
            raise LocationError(f"{url!r} names a host ({parts.netloc!r}); a file location is on this host: "
                                "give file:///base/dir (three slashes), or rsync://user@host/base/dir")  # fmt: skip
        return Location(scheme="file", base=base)
    if parts.scheme == "globus":
        if not _UUID.fullmatch(parts.netloc):
            raise LocationError(f"{parts.netloc!r:.80} is not a Globus endpoint's UUID; give "
                                "globus://ENDPOINT_UUID/base/dir with the collection's UUID")  # fmt: skip
        return Location(scheme="globus", base=base, endpoint=parts.netloc.lower())
    return _rsync(url, parts, base)


def _rsync(url: str, parts: urllib.parse.SplitResult, base: str) -> Location:
    if parts.password is not None:
        raise LocationError(f"{url.split('@')[-1]!r:.80}: a location never holds a password; give "
                            "rsync://user@host/base/dir and let ssh's keys or agent log in")  # fmt: skip
    user, host = parts.username or "", parts.hostname or ""
    if not _USER.fullmatch(user):
        raise LocationError(f"user {user!r:.40} is not a login name; give rsync://user@host/base/dir")
    labels = host.split(".")
    if len(host) > 253 or not all(_HOST_LABEL.fullmatch(label) for label in labels):
        raise LocationError(f"host {host!r:.80} is not a host name; give rsync://user@host/base/dir")
    try:
        port = parts.port
    except ValueError:
        raise LocationError(f"{url!r:.80}: the port is not a number from 1 to 65535; give one, or none "
                            "for ssh's own") from None  # fmt: skip
    if port == 0:
        raise LocationError("port 0 is not a port; give one from 1 to 65535, or none for ssh's own")
    return Location(scheme="rsync", base=base, host=host.lower(), user=user, port=port)


def base_problem(base: str) -> str | None:
    """Why ``base`` cannot be a location's base directory (None when it can)."""
    if not base.startswith("/"):
        return f"the base directory {base!r:.80} is not absolute; give the URL's path from / (e.g. file:///data/in)"
    if ".." in base.split("/"):
        return f"the base directory {base!r:.80} contains '..'; give it without"
    if len(base) > MAX_PATH:
        return f"the base directory is {len(base)} characters; give one of at most {MAX_PATH}"
    return None


def path_problem(path: str) -> str | None:
    """Why a job's ``path`` cannot be taken inside a location (None when it can): it is absolute
    (from the base directory), plain text, bounded, and never climbs out of the base."""
    if not path.startswith("/"):
        return f"path {path!r:.80} is not absolute; give it from the location's base directory, e.g. /in/1.dat"
    if _CONTROL.search(path):
        return f"path {path!r:.80} holds NUL or a control character; give a plain path"
    if len(path) > MAX_PATH:
        return f"path is {len(path)} characters; give one of at most {MAX_PATH}"
    if ".." in path.split("/"):
        return f"path {path!r:.80} contains '..', which would leave the location's base directory; give it without"
    if posixpath.normpath(path) in ("/", "//"):
        return f"path {path!r} is the base directory itself; give a file or directory below it"
    return None


def resolve(location: Location, path: str) -> Place:
    """Where ``path`` of a job is: inside ``location``'s base directory, never outside it."""
    problem = path_problem(path)
    if problem:
        raise LocationError(problem)
    inside = posixpath.normpath(path).lstrip("/")
    concrete = posixpath.join(location.base, inside)
    # the checks above keep it inside; this says so where the decision is made
    if not posixpath.normpath(concrete).startswith(posixpath.normpath(location.base).rstrip("/") + "/"):
        raise LocationError(f"path {path!r:.80} leaves the location's base directory; give one inside it")
    return Place(location=location, path=concrete)


def split_item(item: str) -> tuple[str, str]:
    """``LOCATION:PATH`` as (location, path), or LocationError saying how to write it."""
    name, colon, path = item.partition(":")
    if not colon or not NAME_RE.fullmatch(name):
        raise LocationError(f"{item!r:.80} is not LOCATION:PATH; give a location's name, ':' and an absolute path, "
                            "e.g. far:/in/1.dat")  # fmt: skip
    return name, path
