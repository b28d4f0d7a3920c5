"""Read a request body into ``Fields`` while it streams: JSON, multipart or urlencoded, as
the endpoint allows, never holding more than the limits allow.

- JSON and urlencoded bodies carry no files: at most ``max_text_body_bytes``.
- Multipart is parsed as it arrives (python-multipart's streaming parser). Parts the endpoint
  does not read are discarded as they stream — never buffered, never spooled to disk; a file
  part is capped at ``max_upload_bytes``, a text part at ``max_text_body_bytes``, and there
  are at most ``max_parts`` parts, used or not.
- The total (``max_body_bytes``) and the stall limit are applied to the stream itself by
  ``api.body_limits``; a cap reached here is a 413 naming the field, raised while reading.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from urllib.parse import parse_qsl

from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from ...domain import untrusted
from ...domain.errors import IdeohubError, InvalidRequest, PayloadTooLarge, UnsupportedMediaType
from ...media.decode import ImageLimits
from . import Endpoint
from .fields import Fields, UploadedFile


@dataclass(frozen=True)
class IntakeLimits:
    images: ImageLimits  # per file (bytes, and pixels once decoded)
    max_text_body_bytes: int = 1024 * 1024
    max_parts: int = 64
    max_text_chars: int = 10_000


async def read_fields(request: Request, endpoint: Endpoint, limits: IntakeLimits) -> Fields:
    if endpoint.max_upload_bytes is not None:  # the spec's own limit for this path's files
        limits = replace(limits, images=replace(limits.images, max_bytes=endpoint.max_upload_bytes))
    ctype, params = parse_options_header(request.headers.get("content-type", ""))
    media_type = ctype.decode("latin-1")
    if media_type == "application/json" or media_type.endswith("+json"):
        if not endpoint.json_body:
            raise UnsupportedMediaType("Content-Type", f"{endpoint.path} takes multipart/form-data, not JSON")
        body = await _read_all(request, limits.max_text_body_bytes, "JSON")
        try:
            obj = untrusted.loads(body or b"null")
        except untrusted.UntrustedJSON as exc:
            raise InvalidRequest("body", f"is not valid JSON ({exc})") from None
        if not isinstance(obj, dict):
            raise InvalidRequest("body", "must be a JSON object")
        known = {k: v for k, v in obj.items() if k in endpoint.kept_fields}
        return Fields(values=known, from_json=True, limits=limits.images, max_text_chars=limits.max_text_chars)
    if media_type in ("multipart/form-data", "application/x-www-form-urlencoded"):
        if not endpoint.multipart:
            raise UnsupportedMediaType("Content-Type", f"{endpoint.path} takes application/json")
        fields = Fields(limits=limits.images, max_text_chars=limits.max_text_chars)
        if media_type == "application/x-www-form-urlencoded":
            await _read_urlencoded(request, endpoint, limits, fields)
        else:
            boundary = params.get(b"boundary")
            if not boundary:
                raise InvalidRequest("body", "is not a valid multipart/form-data body (its Content-Type has no boundary)")
            await _StreamingForm(endpoint, limits, fields, boundary).read(request)
        return fields
    want = "application/json or multipart/form-data" if endpoint.json_body and endpoint.multipart else (
        "application/json" if endpoint.json_body else "multipart/form-data"
    )
    raise UnsupportedMediaType("Content-Type", f"'{media_type or 'none'}' is not accepted; send {want}")


class ClientGone(IdeohubError):
    """The client closed the connection before its body arrived (nginx's 499): nothing to answer."""

    status = 499
    title = "Client Closed Request"


async def _read_all(request: Request, cap: int, what: str) -> bytes:
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > cap:
                raise PayloadTooLarge("body", f"a {what} body may be at most {cap} bytes")
            chunks.append(chunk)
    except ClientDisconnect:
        raise ClientGone("the client closed the connection before sending its whole body") from None
    return b"".join(chunks)


async def _read_urlencoded(request: Request, endpoint: Endpoint, limits: IntakeLimits, fields: Fields) -> None:
    body = await _read_all(request, limits.max_text_body_bytes, "urlencoded")
    try:
        pairs = parse_qsl(body.decode("ascii"), keep_blank_values=True, max_num_fields=limits.max_parts,
                          encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise InvalidRequest("body", "is not valid urlencoded UTF-8 text") from None
    except ValueError:
        raise PayloadTooLarge("body", f"may have at most {limits.max_parts} fields") from None
    for name, value in pairs:
        if name in endpoint.kept_fields:
            fields.values.setdefault(name, []).append(value)


class _StreamingForm:
    """python-multipart's callback parser, keeping only the parts the endpoint reads."""

    def __init__(self, endpoint: Endpoint, limits: IntakeLimits, fields: Fields, boundary: bytes) -> None:
        self.endpoint = endpoint
        self.limits = limits
        self.fields = fields
        self.parts = 0
        self._header_name = b""
        self._header_value = b""
        self._disposition = b""
        self._content_type: str | None = None
        self._name = ""
        self._filename: str | None = None
        self._keep = False
        self._cap = 0
        self._data = bytearray()
        self.parser = MultipartParser(boundary, {
            "on_part_begin": self._begin,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value_cb,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
        })

    async def read(self, request: Request) -> None:
        try:
            async for chunk in request.stream():
                self.parser.write(chunk)
            self.parser.finalize()
        except IdeohubError:
            raise
        except ClientDisconnect:
            raise ClientGone("the client closed the connection before sending its whole body") from None
        except Exception as exc:  # python-multipart's own errors: a malformed body
            raise InvalidRequest("body", f"is not a valid multipart/form-data body ({exc.__class__.__name__})") from None

    # ------------------------------------------------------------ callbacks (synchronous, per chunk)

    def _begin(self) -> None:
        self.parts += 1
        if self.parts > self.limits.max_parts:
            raise PayloadTooLarge("body", f"may have at most {self.limits.max_parts} parts")
        self._disposition, self._content_type, self._data = b"", None, bytearray()

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]
        if len(self._header_name) > 1024:
            raise InvalidRequest("body", "a multipart header name is too long")

    def _header_value_cb(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]
        if len(self._header_value) > 8192:
            raise InvalidRequest("body", "a multipart header is too long")

    def _header_end(self) -> None:
        name = self._header_name.strip().lower()
        if name == b"content-disposition":
            self._disposition = self._header_value
        elif name == b"content-type":
            self._content_type = self._header_value.decode("latin-1").strip()
        self._header_name, self._header_value = b"", b""

    def _headers_finished(self) -> None:
        _kind, options = parse_options_header(self._disposition)
        if b"name" not in options:
            raise InvalidRequest("body", "a multipart part has no name in its Content-Disposition")
        self._name = _decode_header(options[b"name"], "a part name")
        self._filename = _decode_header(options[b"filename"], "a filename") if b"filename" in options else None
        is_file = self._filename is not None and self._name in self.endpoint.file_fields
        self._keep = self._name in self.endpoint.kept_fields or self._name in self.endpoint.file_fields
        self._cap = self.limits.images.max_bytes if is_file else self.limits.max_text_body_bytes

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if not self._keep:
            return  # a part nobody reads: dropped as it streams
        if len(self._data) + (end - start) > self._cap:
            if self._filename is not None and self._name in self.endpoint.file_fields:
                raise PayloadTooLarge(self._name, f"file exceeds the limit of {self.limits.images.describe_bytes()}")
            raise PayloadTooLarge(self._name, f"may be at most {self._cap} bytes")
        self._data += data[start:end]

    def _part_end(self) -> None:
        if not self._keep:
            return
        data = bytes(self._data)
        self._data = bytearray()
        if self._filename is not None:
            self.fields.files.setdefault(self._name, []).append(UploadedFile(data, self._filename, self._content_type))
            return
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidRequest(self._name, "must be UTF-8 text") from None
        self.fields.values.setdefault(self._name, []).append(text)


def _decode_header(value: bytes, what: str) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidRequest("body", f"{what} in a multipart header is not UTF-8") from None
