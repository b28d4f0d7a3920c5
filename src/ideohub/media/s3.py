"""Images in an S3-compatible object store (``storage_url = "s3://bucket/prefix"``).

aiobotocore: botocore's own request signing (SigV4, presigned URLs), retries, credential chain
and error model on an async HTTP pool, maintained by aio-libs. One client per process, created on
first use inside the running event loop and closed by ``aclose``; its connection pool is bounded
and every connect/read has a deadline. Credentials are handed to the client only, never kept in a
field a repr or a log would show.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .storage import _SAFE_KEY, ObjectStream, StorageConfigError, check_key, check_prefix, media_type

if TYPE_CHECKING:
    from ..config import Settings

MAX_CONNECTIONS = 50  # per process; a streamed image holds one while its client reads
CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 30.0  # the longest wait for the next bytes of an answer
MAX_ATTEMPTS = 3  # botocore's "standard" retries: throttling, 5xx and connection errors, with backoff
MAX_PRESIGN_S = 7 * 24 * 3600  # SigV4's limit

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")
_PREFIX_SEGMENT = re.compile(r"^[A-Za-z0-9._\-]+$")
_MISSING = {"NoSuchKey", "404", "NotFound"}


def parse_storage_url(url: str) -> tuple[str, str]:
    """``s3://bucket[/prefix]`` → (bucket, prefix ending in "/" or empty), by S3's bucket naming
    rules; every error names the setting."""
    if not url.lower().startswith("s3://"):
        raise StorageConfigError("storage_url: must be s3://bucket/prefix")
    rest = url[5:]
    if any(c in rest for c in "?#\\"):
        raise StorageConfigError("storage_url: must be s3://bucket/prefix, without query, fragment or backslashes")
    bucket, _, prefix = rest.partition("/")
    if "@" in bucket or ":" in bucket:  # credentials (or a port) in the URL: never echoed back
        raise StorageConfigError("storage_url: credentials and ports do not belong in it; set s3_access_key_id/"
                                 "s3_secret_access_key (or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY) and s3_endpoint_url")
    _check_bucket(bucket)
    segments = prefix.split("/")
    if segments and segments[-1] == "":
        segments.pop()  # one trailing slash
    for segment in segments:
        if not _PREFIX_SEGMENT.match(segment) or segment in (".", ".."):
            raise StorageConfigError(f"storage_url: prefix {prefix!r} must be /-separated names of letters, digits, "
                                     "'.', '_' and '-' (no empty, '.' or '..' parts)")
    joined = "/".join(segments)
    if len(joined) > 512:
        raise StorageConfigError("storage_url: prefix is longer than 512 characters")
    return bucket, joined + "/" if joined else ""


def _check_bucket(bucket: str) -> None:
    rule = None
    if not _BUCKET.match(bucket):
        rule = "3 to 63 lowercase letters, digits, '.' and '-', starting and ending with a letter or digit"
    elif ".." in bucket:
        rule = "no two adjacent periods"
    elif bucket.startswith(("xn--", "sthree-")) or bucket.endswith(("-s3alias", "--ol-s3")):
        rule = "no reserved prefix (xn--, sthree-) or suffix (-s3alias, --ol-s3)"
    else:
        with contextlib.suppress(ValueError):
            ipaddress.IPv4Address(bucket)
            rule = "not an IP address"
    if rule:
        raise StorageConfigError(f"storage_url: bucket name {bucket!r} is not valid: {rule}")


class S3Storage:
    """Objects ``<prefix><key>`` in one bucket. PUTs are atomic, so there is nothing partial to
    sweep; DELETE is idempotent."""

    def __init__(self, bucket: str, prefix: str = "", *, endpoint_url: str | None = None, region: str | None = None,
                 access_key_id: str | None = None, secret_access_key: str | None = None,
                 max_connections: int = MAX_CONNECTIONS) -> None:
        _check_bucket(bucket)
        if bool(access_key_id) != bool(secret_access_key):
            raise StorageConfigError("s3_access_key_id and s3_secret_access_key: set both or neither "
                                     "(neither: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or the AWS credential chain)")
        if endpoint_url is not None:
            parts = urlsplit(endpoint_url)
            if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.password:
                raise StorageConfigError("s3_endpoint_url: must be an http(s):// URL without credentials, "
                                         "e.g. http://127.0.0.1:9000")
        self.bucket, self.prefix = bucket, prefix
        self.endpoint_url = endpoint_url
        self._client_args: dict[str, Any] = {"endpoint_url": endpoint_url, "region_name": region}
        if access_key_id:  # else botocore's chain: AWS_* variables, shared files, instance roles
            self._client_args |= {"aws_access_key_id": access_key_id, "aws_secret_access_key": secret_access_key}
        self._max_connections = max_connections
        self._s3: Any = None
        self._stack: contextlib.AsyncExitStack | None = None

    @classmethod
    def from_settings(cls, settings: "Settings") -> "S3Storage":
        bucket, prefix = parse_storage_url(settings.storage_url or "")
        return cls(bucket, prefix, endpoint_url=settings.s3_endpoint_url, region=settings.s3_region,
                   access_key_id=settings.s3_access_key_id, secret_access_key=settings.s3_secret_access_key)

    def __repr__(self) -> str:
        return f"S3Storage(s3://{self.bucket}/{self.prefix}, endpoint={self.endpoint_url!r})"

    def object_key(self, key: str) -> str:
        return self.prefix + check_key(key)

    async def _client(self) -> Any:
        if self._s3 is None:
            from aiobotocore.config import AioConfig
            from aiobotocore.session import get_session

            config = AioConfig(
                connect_timeout=CONNECT_TIMEOUT_S, read_timeout=READ_TIMEOUT_S,
                max_pool_connections=self._max_connections,
                retries={"max_attempts": MAX_ATTEMPTS, "mode": "standard"},
                signature_version="s3v4",
                # S3-compatible servers are addressed by path; AWS picks virtual hosts itself
                s3={"addressing_style": "path" if self.endpoint_url else "auto"},
                # checksums only where S3 requires them: not every S3-compatible server knows the newer ones
                request_checksum_calculation="when_required", response_checksum_validation="when_required",
            )
            stack = contextlib.AsyncExitStack()
            client = await stack.enter_async_context(get_session().create_client("s3", config=config,
                                                                                 **self._client_args))
            if self._s3 is None:
                self._s3, self._stack = client, stack
            else:  # another task created one meanwhile
                await stack.aclose()
        return self._s3

    async def put(self, key: str, data: bytes) -> None:
        s3 = await self._client()
        await s3.put_object(Bucket=self.bucket, Key=self.object_key(key), Body=data, ContentType=media_type(key))

    async def get(self, key: str) -> bytes | None:
        stream = await self.stream(key)
        return None if stream is None else await stream.read_all()

    async def stream(self, key: str) -> ObjectStream | None:
        name = self.object_key(key)
        s3 = await self._client()
        try:
            answer = await s3.get_object(Bucket=self.bucket, Key=name)
        except Exception as exc:
            if _is_missing(exc):
                return None
            raise
        body = answer["Body"]

        async def close() -> None:
            body.close()  # unread rest: the connection is dropped, not returned half-read

        return ObjectStream(int(answer["ContentLength"]), body.read, close)

    async def size(self, key: str) -> int | None:
        name = self.object_key(key)
        s3 = await self._client()
        try:
            answer = await s3.head_object(Bucket=self.bucket, Key=name)
        except Exception as exc:
            if _is_missing(exc):
                return None
            raise
        return int(answer["ContentLength"])

    async def delete(self, key: str) -> None:
        name = self.object_key(key)
        s3 = await self._client()
        await s3.delete_object(Bucket=self.bucket, Key=name)  # 204 whether or not it existed

    async def delete_prefix(self, prefix: str) -> int:
        start = self.prefix + check_prefix(prefix)
        s3 = await self._client()
        names: list[str] = []
        async for page in s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=start):
            for obj in page.get("Contents", []):
                if _SAFE_KEY.match(obj["Key"][len(self.prefix):]):  # ours: flat safe names under our prefix
                    names.append(obj["Key"])
        for i in range(0, len(names), 1000):  # DeleteObjects takes at most 1000 keys
            answer = await s3.delete_objects(
                Bucket=self.bucket, Delete={"Objects": [{"Key": n} for n in names[i:i + 1000]], "Quiet": True})
            if answer.get("Errors"):
                first = answer["Errors"][0]
                raise OSError(f"S3 DeleteObjects failed for {len(answer['Errors'])} objects, e.g. "
                              f"{first.get('Key')!r}: {first.get('Code')}")
        return len(names)

    async def presigned_url(self, key: str, ttl_s: int) -> str | None:
        name = self.object_key(key)
        ttl_s = max(1, min(int(ttl_s), MAX_PRESIGN_S))
        s3 = await self._client()
        return await s3.generate_presigned_url(
            "get_object", ExpiresIn=ttl_s,
            Params={"Bucket": self.bucket, "Key": name, "ResponseContentType": media_type(key),
                    "ResponseCacheControl": f"private, max-age={ttl_s}, immutable"})

    async def sweep_partial(self, older_than: float) -> int:
        return 0  # a PUT is atomic: an interrupted one leaves nothing

    async def aclose(self) -> None:
        stack, self._stack, self._s3 = self._stack, None, None
        if stack is not None:
            await stack.aclose()


def _is_missing(exc: Exception) -> bool:
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return False
    return (response.get("Error", {}).get("Code") in _MISSING
            or response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404
            and response.get("Error", {}).get("Code") != "NoSuchBucket")
