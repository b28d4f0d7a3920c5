"""Read a Starlette request into ``Fields``: JSON or multipart, as the endpoint allows."""

from __future__ import annotations

import json

from starlette.datastructures import UploadFile
from starlette.requests import Request

from ...domain.errors import InvalidRequest, PayloadTooLarge, UnsupportedMediaType
from ...media.decode import ImageLimits
from . import Endpoint
from .fields import Fields, UploadedFile


async def read_fields(request: Request, endpoint: Endpoint, limits: ImageLimits, max_body_bytes: int) -> Fields:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_body_bytes:
        raise PayloadTooLarge("body", f"request body is {declared} bytes; the limit is {max_body_bytes} bytes")
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "application/json" or (ctype.endswith("+json")):
        if not endpoint.json_body:
            raise UnsupportedMediaType("Content-Type", f"{endpoint.path} takes multipart/form-data, not JSON")
        body = await request.body()
        if len(body) > max_body_bytes:
            raise PayloadTooLarge("body", f"request body exceeds {max_body_bytes} bytes")
        try:
            obj = json.loads(body or b"null")
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InvalidRequest("body", f"is not valid JSON ({exc})") from None
        except RecursionError:
            raise InvalidRequest("body", "is not valid JSON (nested too deeply)") from None
        return Fields.from_json_object(obj, limits)
    if ctype in ("multipart/form-data", "application/x-www-form-urlencoded"):
        if not endpoint.multipart:
            raise UnsupportedMediaType("Content-Type", f"{endpoint.path} takes application/json")
        try:
            form = await request.form(max_files=64, max_fields=256, max_part_size=4 * 1024 * 1024)
        except Exception as exc:  # malformed multipart bodies raise parser-specific errors
            raise InvalidRequest("body", f"is not a valid multipart/form-data body ({exc})") from None
        fields = Fields(limits=limits)
        try:
            for key, value in form.multi_items():
                if isinstance(value, UploadFile):
                    data = await value.read(limits.max_bytes + 1)
                    if len(data) > limits.max_bytes:
                        raise PayloadTooLarge(key, f"file exceeds the limit of {limits.describe_bytes()}")
                    fields.files.setdefault(key, []).append(UploadedFile(data, value.filename, value.content_type))
                else:
                    fields.values.setdefault(key, []).append(value)
        finally:
            await form.close()
        return fields
    want = "application/json or multipart/form-data" if endpoint.json_body and endpoint.multipart else (
        "application/json" if endpoint.json_body else "multipart/form-data"
    )
    raise UnsupportedMediaType("Content-Type", f"'{ctype or 'none'}' is not accepted; send {want}")
