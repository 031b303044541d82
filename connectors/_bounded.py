"""Reading a file a user named, with a size limit: secret files, vector files, config files.

A user may name anything: ``/dev/zero`` (endless), a FIFO nobody writes to (``open`` would block
forever), a 10 GB file by mistake. So every such file is read with a limit on its size fitting what
it holds, and a non-regular file (a FIFO, a process substitution ``<(...)``, a device) is opened
without blocking and read only while data keeps arriving within :data:`STREAM_WAIT` seconds. Past
the limit, or when nothing arrives, the caller's error class is raised naming the file and the limit.
"""

from __future__ import annotations

import os
import select
import stat
import time
from pathlib import Path

from ._errors import InvalidURI

__all__ = ["STREAM_WAIT", "read_bounded"]

#: Seconds a non-regular file (a pipe, a device) may stay silent before reading it is given up.
STREAM_WAIT = 10.0
_CHUNK = 1 << 16


def read_bounded(path: str | Path, limit: int, what: str, error: type[Exception] = InvalidURI) -> bytes:
    """The bytes of ``path``, at most ``limit`` of them; ``error(message)`` past that, for a file that
    cannot be read, or for a pipe / device that stays silent for :data:`STREAM_WAIT` seconds.
    ``what`` names the file in messages (``"secret_file='/x'"``)."""
    try:
        fd = os.open(os.fspath(Path(path).expanduser()), os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise error(f"{what} cannot be read: {exc.strerror or exc}") from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise error(f"{what} is a directory, not a file")
        if stat.S_ISREG(info.st_mode):
            if info.st_size > limit:
                raise error(f"{what} is {info.st_size:,} bytes; at most {limit:,} are read from such a file")
            os.set_blocking(fd, True)  # a regular file never blocks; O_NONBLOCK is for pipes
        data = _read_all(fd, limit, what, error, regular=stat.S_ISREG(info.st_mode))
    except OSError as exc:
        raise error(f"{what} cannot be read: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    return data


def _read_all(fd: int, limit: int, what: str, error: type[Exception], *, regular: bool) -> bytes:
    parts: list[bytes] = []
    size = 0
    while True:
        if not regular:
            ready, _, _ = select.select([fd], [], [], STREAM_WAIT)
            if not ready:
                raise error(f"{what} is not a regular file and nothing arrived from it for {STREAM_WAIT:g} s")
        try:
            chunk = os.read(fd, min(_CHUNK, limit + 1 - size))
        except BlockingIOError:  # a pipe whose writer has not written yet: wait for it above
            time.sleep(0.01)
            continue
        if not chunk:
            return b"".join(parts)
        parts.append(chunk)
        size += len(chunk)
        if size > limit:
            kind = "" if regular else " (it is not a regular file: a pipe or a device such as /dev/zero?)"
            raise error(f"{what} holds more than {limit:,} bytes{kind}; at most {limit:,} are read from such a file")
