"""A warm worker's environment variables, set per job over the worker's own."""

from __future__ import annotations

import os
import sys

_FS_ENCODING = sys.getfilesystemencoding()


class Environment:
    """Job environments applied over the worker's own, changing only what differs.

    Jobs of one app differ in a few variables (their id, their workdir).  When the last run
    left the job's variables as it was given them, only those whose values differ from the
    last job's are set; after a run that changed one, every variable of the next job is
    checked.  Variables are set as ``os.environ`` sets them (``putenv`` and CPython's bytes
    store behind it), minus its per-call encoding helpers: this is paid by every short run.
    """

    def __init__(self) -> None:
        self.base: dict[str, str | None] = {}  # the worker's value of every variable a job set
        self.applied: dict[str, str] = {}
        self._data: dict[bytes, bytes] | None = getattr(os.environ, "_data", None)
        self._given: dict[bytes, bytes] = {}  # the variables the last run was given, encoded
        self._names: dict[str, bytes] = {}

    def apply(self, env: dict[str, str]) -> None:
        data, given, last = self._data, self._given, self.applied
        for key in last.keys() - env.keys():
            value = self.base[key]
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
            given.pop(self._name(key), None)
        # dict views compare in C: untouched when the last run left its variables as given
        untouched = data is not None and bool(given) and given.items() <= data.items()
        if not untouched:
            given.clear()
        for key, value in env.items() - last.items() if untouched else env.items():
            if key not in self.base:
                self.base[key] = os.environ.get(key)
            if data is None:  # not CPython's os module: every variable is set
                os.environ[key] = value
                continue
            name = self._name(key)
            encoded = value.encode(_FS_ENCODING, "surrogateescape")
            if data.get(name) != encoded:
                os.putenv(name, encoded)
                data[name] = encoded
            given[name] = encoded
        self.applied = env

    def _name(self, key: str) -> bytes:
        name = self._names.get(key)
        if name is None:
            name = self._names[key] = os.fsencode(key)
        return name
