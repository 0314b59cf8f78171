"""One sorter per library: an exclusive `fcntl.flock` on `library/.sorter/lock`.

The kernel releases a flock when its process dies, however it dies, so a lock left by a killed sorter
is recovered by simply taking it again; the file's content (pid, host, start time) only serves the
message a second sorter prints when it refuses to start.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path

from .errors import UserError


class LockedError(UserError):
    exit_code = 6


class LibraryLock:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.fd: int | None = None
        self.stale: dict | None = None  # the previous holder's record when we took over its lock

    def acquire(self) -> "LibraryLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read(fd)
            os.close(fd)
            who = (f"pid {holder.get('pid')} on {holder.get('host')}, since {holder.get('started')}"
                   if holder else "another process")
            raise LockedError(f"another sorter is using the library {self.path.parent.parent} ({who})") from None
        previous = _read(fd)
        if previous:
            self.stale = previous  # a holder that died without releasing: its flock went with it
        record = {"pid": os.getpid(), "host": socket.gethostname(),
                  "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode(), 0)
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            os.ftruncate(self.fd, 0)  # an empty lock file = released cleanly
        finally:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> "LibraryLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def holder(path: Path) -> dict | None:
    """Who holds the library lock right now ({} when unknown), or None when nobody does."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # held for microseconds: only tests for a holder
    except BlockingIOError:
        return _read(fd)
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _read(fd: int) -> dict:
    try:
        data = os.pread(fd, 4096, 0)
        return json.loads(data) if data.strip() else {}
    except (OSError, ValueError):
        return {}
