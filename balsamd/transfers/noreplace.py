"""Renaming to a name only when nothing is there, in one system call where the kernel can.

A rename over an empty directory replaces it, so "is the name free?" and "rename" as two
calls could replace a working directory made in between, and cost a path walk more.  Linux's
``renameat2`` with ``RENAME_NOREPLACE`` asks both at once; elsewhere (another kernel, a C
library without it, a filesystem that refuses the flag) the two calls are made.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import os
from collections.abc import Callable

_AT_FDCWD = -100  # <fcntl.h>: a path relative to the working directory, as rename's
_RENAME_NOREPLACE = 1  # <linux/fs.h>
# what renameat2 says when the kernel or the filesystem does not know the flag
_UNSUPPORTED = (errno.EINVAL, errno.ENOSYS)


def _renameat2() -> Callable[..., int] | None:
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        call = libc.renameat2
        call.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
        call.restype = ctypes.c_int
        return call
    return None


_call = _renameat2()


def rename_new(source: str, dest: str) -> bool:
    """Rename ``source`` to ``dest`` unless something (even a link to nothing) is at ``dest``:
    False then, changing nothing.  OSError as rename raises it otherwise (FileNotFoundError
    when either's directory is missing)."""
    if _call is not None:
        if _call(_AT_FDCWD, os.fsencode(source), _AT_FDCWD, os.fsencode(dest), _RENAME_NOREPLACE) == 0:
            return True
        code = ctypes.get_errno()
        if code == errno.EEXIST:
            return False
        if code not in _UNSUPPORTED:
            raise OSError(code, os.strerror(code), source, None, dest)
    if os.path.lexists(dest):
        return False
    os.rename(source, dest)
    return True
