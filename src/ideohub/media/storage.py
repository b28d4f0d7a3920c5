"""Where result images (and the staged inputs of async generations) live.

``LocalStorage`` is the embedded default; ``media.s3.S3Storage`` keeps them in an S3-compatible
object store so that every instance of a fleet serves every image. ``make_storage`` picks one from
the settings. Keys are flat safe names (``check_key``); an object store puts its prefix in front.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import anyio

if TYPE_CHECKING:
    from ..config import Settings

_SAFE_KEY = re.compile(r"^[A-Za-z0-9_\-]+\.(png|jpg|jpeg|webp)$")
_SAFE_PREFIX = re.compile(r"^[A-Za-z0-9_\-]+$")
CHUNK_BYTES = 64 * 1024
MEDIA_TYPES = {"png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg", "webp": "image/webp"}


class StorageConfigError(ValueError):
    """A storage setting that cannot work; the message names the setting."""


class ObjectStream:
    """A stored object being read: ``size`` bytes, as chunks. The underlying file or connection is
    released when the chunks run out or break off, or by ``aclose`` (a 304, a HEAD, a client gone)."""

    def __init__(self, size: int, read: Callable[[int], Awaitable[bytes]], close: Callable[[], Awaitable[None]]) -> None:
        self.size = size
        self._read, self._close, self._closed = read, close, False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            while chunk := await self._read(CHUNK_BYTES):
                yield chunk
        finally:
            await self.aclose()

    async def read_all(self) -> bytes:
        return b"".join([chunk async for chunk in self])

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            await self._close()

    async def __aenter__(self) -> "ObjectStream":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class Storage(Protocol):
    async def put(self, key: str, data: bytes) -> None:
        """Store ``data`` whole under ``key`` (readers never see a partial object)."""
        ...

    async def get(self, key: str) -> bytes | None: ...

    async def stream(self, key: str) -> ObjectStream | None:
        """The object as chunks with its size, or None when it does not exist."""
        ...

    async def size(self, key: str) -> int | None:
        """The object's size without reading it (HEAD, 304, redirects), or None when missing."""
        ...

    async def delete(self, key: str) -> None:
        """Idempotent: deleting a missing object is not an error."""
        ...

    async def delete_prefix(self, prefix: str) -> int:
        """Delete every object whose key starts with ``prefix`` (what a crashed run wrote under a
        request's prefix); returns how many."""
        ...

    async def presigned_url(self, key: str, ttl_s: int) -> str | None:
        """A URL that fetches the object directly for ``ttl_s`` seconds, or None where the
        backend (or this object) is served by this process instead."""
        ...

    async def sweep_partial(self, older_than: float) -> int:
        """Delete what interrupted writes left behind before ``older_than`` (unix time)."""
        ...

    async def aclose(self) -> None: ...


def check_key(key: str) -> str:
    if not _SAFE_KEY.match(key):
        raise ValueError(f"invalid storage key {key!r}")
    return key


def check_prefix(prefix: str) -> str:
    """A non-empty run of safe name characters: never a path, a glob or 'everything'."""
    if not _SAFE_PREFIX.match(prefix):
        raise ValueError(f"invalid storage key prefix {prefix!r}")
    return prefix


def media_type(key: str) -> str:
    return MEDIA_TYPES.get(key.rsplit(".", 1)[-1], "application/octet-stream")


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

    async def delete_prefix(self, prefix: str) -> int:
        removed = 0
        for path in self.root.glob(check_prefix(prefix) + "*"):  # the prefix has no glob characters
            if _SAFE_KEY.match(path.name):
                try:
                    path.unlink()
                    removed += 1
                except FileNotFoundError:
                    pass
        return removed

    def local_path(self, key: str) -> Path | None:
        """The file, when it exists."""
        path = self._path(key)
        return path if path.is_file() else None

    async def get(self, key: str) -> bytes | None:
        path = self.local_path(key)
        if path is None:
            return None
        try:
            return await anyio.Path(path).read_bytes()
        except FileNotFoundError:  # deleted in between
            return None

    async def stream(self, key: str) -> ObjectStream | None:
        try:
            fh = await anyio.open_file(self._path(key), "rb")
        except (FileNotFoundError, IsADirectoryError):
            return None
        size = os.fstat(fh.wrapped.fileno()).st_size  # of the file we hold open, even if unlinked meanwhile
        return ObjectStream(size, fh.read, fh.aclose)

    async def size(self, key: str) -> int | None:
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError:
            return None

    async def presigned_url(self, key: str, ttl_s: int) -> str | None:
        check_key(key)
        return None  # served by this process

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

    async def aclose(self) -> None:
        pass


class FallbackStorage:
    """An object store in front of the local directory used before the switch to it: writes go to
    ``primary``; reads find an object on local disk first (a cheap stat), so images written before
    the switch stay served until they expire; deletes delete both."""

    def __init__(self, primary: Storage, legacy: LocalStorage) -> None:
        self.primary, self.legacy = primary, legacy

    async def put(self, key: str, data: bytes) -> None:
        await self.primary.put(key, data)

    async def get(self, key: str) -> bytes | None:
        data = await self.legacy.get(key)
        return data if data is not None else await self.primary.get(key)

    async def stream(self, key: str) -> ObjectStream | None:
        return await self.legacy.stream(key) or await self.primary.stream(key)

    async def size(self, key: str) -> int | None:
        size = await self.legacy.size(key)
        return size if size is not None else await self.primary.size(key)

    async def delete(self, key: str) -> None:
        await self.primary.delete(key)
        await self.legacy.delete(key)

    async def delete_prefix(self, prefix: str) -> int:
        return await self.primary.delete_prefix(prefix) + await self.legacy.delete_prefix(prefix)

    async def presigned_url(self, key: str, ttl_s: int) -> str | None:
        if await self.legacy.size(key) is not None:
            return None  # only this disk has it: streamed
        return await self.primary.presigned_url(key, ttl_s)

    async def sweep_partial(self, older_than: float) -> int:
        return await self.primary.sweep_partial(older_than) + await self.legacy.sweep_partial(older_than)

    async def aclose(self) -> None:
        await self.primary.aclose()


def make_storage(settings: "Settings") -> Storage:
    """``<data_dir>/images`` by default; with ``storage_url = "s3://bucket/prefix"`` the object store,
    falling back to that directory for images stored there before the switch."""
    local = LocalStorage(settings.images_dir)
    if not settings.storage_url:
        return local
    scheme = settings.storage_url.split("://", 1)[0].lower() if "://" in settings.storage_url else ""
    if scheme != "s3":
        raise StorageConfigError(
            f"storage_url: unsupported {settings.storage_url!r}; use s3://bucket/prefix, or leave it unset for local disk")
    from .s3 import S3Storage

    return FallbackStorage(S3Storage.from_settings(settings), local)
