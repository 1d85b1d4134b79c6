"""One writer at a time: an advisory lock (``flock``) on a file beside what is written, naming its holder.

A second writer is refused at once with one line naming the holder (pid, host, start time). The kernel releases a
lock when its process ends, however it ends, so a killed run never leaves a lock that still holds; the file it leaves
names a process that is gone, and the next writer takes it over with a warning. ``flock`` holds across machines
where the file system shares it (NFS does, through its lock manager). Readers take no lock.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import warnings
from datetime import datetime
from pathlib import Path

from instanas.errors import InstaNASError


class LockedError(InstaNASError):
    """What a run would write is being written by another process."""


def _holder(fd: int) -> dict | None:
    os.lseek(fd, 0, os.SEEK_SET)
    try:
        return json.loads(os.read(fd, 4096).decode() or "null")
    except (ValueError, UnicodeDecodeError):
        return None


def _describe(holder: dict | None) -> str:
    if not holder:
        return "another process"
    return f"pid {holder.get('pid')} on {holder.get('host')} since {holder.get('started')} ({holder.get('command')})"


class FileLock:
    """``with FileLock(path, what):`` — hold ``path`` while writing ``what`` (a phrase for messages)."""

    def __init__(self, path: str | os.PathLike, what: str):
        self.path, self.what = Path(path), what
        self._fd: int | None = None

    def acquire(self) -> FileLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _holder(fd)
                os.close(fd)
                raise LockedError(f"{self.what} is being written by {_describe(holder)}; wait for it to end, or "
                                  f"write elsewhere (lock: {self.path})") from None
            try:
                if os.stat(self.path).st_ino == os.fstat(fd).st_ino:
                    break
            except FileNotFoundError:
                pass
            os.close(fd)  # the holder released and removed the file while we opened it: open the new one
        previous = _holder(fd)
        if previous:
            warnings.warn(f"{self.what}: taking over the lock of {_describe(previous)}, which has ended", stacklevel=2)
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": datetime.now().isoformat(timespec="seconds"),
              "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:3]])}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)
        os.fsync(fd)
        self._fd = fd
        return self

    def release(self) -> None:
        """Remove the lock file (still holding the lock, so no one else has it yet), then let go."""
        if self._fd is None:
            return
        self.path.unlink(missing_ok=True)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> FileLock:
        return self.acquire()

    def __exit__(self, *_) -> None:
        self.release()
