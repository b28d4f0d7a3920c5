"""Where result images live. ``LocalStorage`` is the embedded default; an object store
implements the same small protocol later."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Protocol

import anyio

_SAFE_KEY = re.compile(r"^[A-Za-z0-9_\-]+\.(png|jpg|jpeg|webp)$")


class Storage(Protocol):
    async def put(self, key: str, data: bytes) -> None: ...
    async def delete(self, key: str) -> None: ...
    def local_path(self, key: str) -> Path | None:
        """A file to stream from, when the backend has one."""
        ...
    async def get(self, key: str) -> bytes | None: ...
    async def sweep_partial(self, older_than: float) -> int:
        """Delete what interrupted writes left behind before ``older_than`` (unix time)."""
        ...


def check_key(key: str) -> str:
    if not _SAFE_KEY.match(key):
        raise ValueError(f"invalid storage key {key!r}")
    return key


class LocalStorage:
    """Files under one directory; writes are atomic (temp file + rename), so a crash never
    leaves a half-written image behind a URL."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def _put_sync(self, key: str, data: bytes) -> None:
        path = self._path(key)
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    async def put(self, key: str, data: bytes) -> None:
        await anyio.to_thread.run_sync(self._put_sync, key, data)

    async def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def local_path(self, key: str) -> Path | None:
        path = self._path(key)
        return path if path.is_file() else None

    async def get(self, key: str) -> bytes | None:
        path = self.local_path(key)
        return await anyio.Path(path).read_bytes() if path else None

    async def sweep_partial(self, older_than: float) -> int:
        """Temporary files of writes a crash interrupted (the rename never happened)."""
        removed = 0
        for tmp in self.root.glob(".tmp-*"):
            try:
                if tmp.stat().st_mtime < older_than:
                    tmp.unlink()
                    removed += 1
            except FileNotFoundError:
                pass
        return removed
