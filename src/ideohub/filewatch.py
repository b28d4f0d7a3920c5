"""A file several processes share (``secrets.json``): read-modify-write under a lock, and a
parsed view that follows the file when another process changes it (a key rotation takes effect
on running servers without a restart)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Generic, TypeVar

T = TypeVar("T")


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Serialise read-modify-write of ``path`` between processes (two rotations at once must
    both land). The lock is a sibling file, since ``path`` itself is replaced atomically."""
    lock = path.with_name("." + path.name + ".lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            yield
            return
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


class WatchedFile(Generic[T]):
    """``parse(path)`` of a file, re-read when the file's identity (inode, size, mtime) changed,
    looked at most once per ``recheck_s``; while the file is being replaced or is unreadable, the
    last good value stays. ``clock`` is injectable so tests need not wait for ``recheck_s``."""

    def __init__(self, path: Path, parse: Callable[[Path], T], *, recheck_s: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.path = Path(path)
        self.recheck_s = recheck_s
        self._parse = parse
        self._clock = clock
        self._lock = threading.Lock()
        self._identity: tuple[int, int, int] | None = None
        self._checked = float("-inf")
        self._value: T | None = None
        self.refresh()

    def refresh(self) -> T:
        with self._lock:
            self._checked = self._clock()
            st = os.stat(self.path)
            identity = (st.st_ino, st.st_size, st.st_mtime_ns)
            if identity != self._identity or self._value is None:
                self._value = self._parse(self.path)
                self._identity = identity
            return self._value

    def current(self) -> T:
        value = self._value
        if value is not None and self._clock() - self._checked < self.recheck_s:
            return value
        try:
            return self.refresh()
        except (OSError, ValueError):  # being replaced or edited by hand: keep the last good value
            if value is None:
                raise
            return value
