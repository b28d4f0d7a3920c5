"""One view over a request's fields, whether they came as multipart parts or a JSON object.

Multipart values are strings and are coerced; JSON values keep their JSON types and are
checked strictly. Fields an endpoint does not define are simply never read (ignored), and
every error names the field (with its ``image_request.`` prefix where it has one).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar

from ...domain import untrusted
from ...domain.errors import InvalidRequest
from ...domain.operations import ColorMember, ColorPalette, ImageInput
from ...domain.enums import ColorPaletteName
from ...media.decode import ImageLimits, read_image

E = TypeVar("E", bound=StrEnum)

_INTEGER = re.compile(r"[+-]?[0-9]+")  # ASCII digits only: int() would also take "1_000" and "１２"
_TOO_LONG = f"must be an integer (at most {untrusted.MAX_NUMBER_CHARS} characters)"


def loads_json(text: str, name: str, detail: bool = True) -> Any:
    """JSON in a client's text field: every failure (deep nesting, NaN, unpaired surrogates
    included) is a 400 naming the field."""
    try:
        return untrusted.loads(text)
    except untrusted.UntrustedJSON as exc:
        reason = str(exc) if detail else str(exc).split(" at position")[0]
        raise InvalidRequest(name, f"is not valid JSON ({reason})") from None


@dataclass
class UploadedFile:
    data: bytes
    filename: str | None = None
    content_type: str | None = None


@dataclass
class Fields:
    """``values``: name → list of text values (multipart) or the JSON value (JSON bodies)."""

    values: dict[str, Any] = field(default_factory=dict)
    files: dict[str, list[UploadedFile]] = field(default_factory=dict)
    from_json: bool = False
    prefix: str = ""
    limits: ImageLimits = field(default_factory=ImageLimits)
    max_text_chars: int = 10_000
    read: set[str] = field(default_factory=set)  # names the parser asked for (tests check them against the schema)

    # ------------------------------------------------------------ construction

    @classmethod
    def from_json_object(cls, obj: Any, limits: ImageLimits, prefix: str = "", what: str = "body",
                         max_text_chars: int = 10_000) -> "Fields":
        if not isinstance(obj, dict):
            raise InvalidRequest(prefix.rstrip(".") or what, "must be a JSON object")
        return cls(values=dict(obj), from_json=True, prefix=prefix, limits=limits, max_text_chars=max_text_chars)

    def nested_json(self, name: str, required: bool = True) -> "Fields":
        """The legacy ``image_request``: a JSON object (JSON body) or a JSON string part (multipart)."""
        raw = self._raw(name)
        if raw is None:
            if required:
                raise InvalidRequest(self.name(name), "is required")
            raw = {}
        if isinstance(raw, str):
            raw = loads_json(raw, self.name(name))
        nested = Fields.from_json_object(raw, self.limits, prefix=self.name(name) + ".", max_text_chars=self.max_text_chars)
        nested.read = self.read  # one record of what was read, nested names included
        return nested

    # ------------------------------------------------------------ access

    def name(self, key: str) -> str:
        return self.prefix + key

    def _raw(self, key: str) -> Any:
        self.read.add(self.name(key))
        if self.from_json:
            return self.values.get(key)
        items = self.values.get(key)
        if items:
            return items[-1]
        uploads = self.files.get(key)
        if uploads:  # a text field sent as a file part (e.g. a JSON file for image_request)
            try:
                return uploads[-1].data.decode("utf-8")
            except UnicodeDecodeError:
                raise InvalidRequest(self.name(key), "must be UTF-8 text") from None
        return None

    def _list(self, key: str) -> list[Any]:
        self.read.add(self.name(key))
        if self.from_json:
            value = self.values.get(key)
            if value is None:
                return []
            return value if isinstance(value, list) else [value]
        return list(self.values.get(key) or [])

    def text(self, key: str, required: bool = False) -> str | None:
        raw = self._raw(key)
        if raw is None or (not self.from_json and raw == "" and not required):
            if required:
                raise InvalidRequest(self.name(key), "is required")
            return None
        if not isinstance(raw, str):
            raise InvalidRequest(self.name(key), "must be a string")
        problem = untrusted.check_text(raw, self.max_text_chars)
        if problem:
            raise InvalidRequest(self.name(key), problem)
        if required and not raw.strip():
            raise InvalidRequest(self.name(key), "is required and must not be empty")
        return raw

    def integer(self, key: str, default: int | None = None) -> int | None:
        raw = self._raw(key)
        if raw is None or raw == "":
            return default
        if isinstance(raw, bool):
            raise InvalidRequest(self.name(key), "must be an integer")
        if isinstance(raw, untrusted.OutOfRange):
            raise InvalidRequest(self.name(key), _TOO_LONG)
        if isinstance(raw, int):
            return raw
        if isinstance(raw, float):
            if raw.is_integer():
                return int(raw)
            raise InvalidRequest(self.name(key), "must be an integer")
        if isinstance(raw, str) and not self.from_json:
            text = raw.strip()
            if len(text) > untrusted.MAX_NUMBER_CHARS:
                raise InvalidRequest(self.name(key), _TOO_LONG)
            if _INTEGER.fullmatch(text):
                return int(text)
            raise InvalidRequest(self.name(key), f"must be an integer, got '{untrusted.printable(raw, 40)}'")
        raise InvalidRequest(self.name(key), "must be an integer")

    def enum(self, key: str, cls: type[E], default: E | None = None, required: bool = False) -> E | None:
        raw = self.text(key, required=required)
        if raw is None:
            return default
        try:
            return cls(raw)
        except ValueError:
            allowed = ", ".join(m.value for m in cls)
            raise InvalidRequest(self.name(key), f"'{raw[:60]}' is not one of: {allowed}") from None

    def choice(self, key: str, allowed: dict[str, Any] | set[str], required: bool = False, hint: str = "") -> str | None:
        raw = self.text(key, required=required)
        if raw is not None and raw not in allowed:
            raise InvalidRequest(self.name(key), f"'{raw[:60]}' is not a supported value{hint}")
        return raw

    def string_list(self, key: str) -> tuple[str, ...] | None:
        """Repeated parts, a JSON array, or one comma-joined string (``style_codes``)."""
        items = self._list(key)
        out: list[str] = []
        if len(items) > 64:
            raise InvalidRequest(self.name(key), "may have at most 64 items")
        for item in items:
            if not isinstance(item, str):
                raise InvalidRequest(self.name(key), "must be a list of strings")
            problem = untrusted.check_text(item, self.max_text_chars)
            if problem:
                raise InvalidRequest(self.name(key), problem)
            stripped = item.strip()
            if stripped.startswith("["):
                try:
                    parsed = untrusted.loads(stripped)
                except untrusted.UntrustedJSON:
                    raise InvalidRequest(self.name(key), "is not a valid JSON array") from None
                if not isinstance(parsed, list) or not all(isinstance(p, str) for p in parsed):
                    raise InvalidRequest(self.name(key), "must be a list of strings")
                out.extend(parsed)
            else:
                out.extend(p.strip() for p in stripped.split(",") if p.strip())
        if not self.from_json and not "".join(items).strip():
            return None  # empty parts: not sent, as for every other multipart field
        return tuple(out) if items else None

    def color_palette(self, key: str = "color_palette") -> ColorPalette | None:
        raw = self._raw(key)
        if raw is None or raw == "":
            return None
        name = self.name(key)
        if isinstance(raw, str):
            raw = loads_json(raw, name, detail=False)
        if not isinstance(raw, dict):
            raise InvalidRequest(name, "must be an object with 'name' or 'members'")
        palette_name = None
        if raw.get("name") is not None:
            try:
                palette_name = ColorPaletteName(raw["name"])
            except (ValueError, TypeError):
                allowed = ", ".join(m.value for m in ColorPaletteName)
                raise InvalidRequest(f"{name}.name", f"is not one of: {allowed}") from None
        members = None
        if raw.get("members") is not None:
            if not isinstance(raw["members"], list):
                raise InvalidRequest(f"{name}.members", "must be an array")
            parsed: list[ColorMember] = []
            for i, m in enumerate(raw["members"]):
                if not isinstance(m, dict) or not isinstance(m.get("color_hex"), str):
                    raise InvalidRequest(f"{name}.members[{i}].color_hex", "is required and must be a string")
                weight = m.get("color_weight")
                if weight is not None and (isinstance(weight, bool) or not isinstance(weight, (int, float))):
                    raise InvalidRequest(f"{name}.members[{i}].color_weight", "must be a number")
                parsed.append(ColorMember(m["color_hex"], None if weight is None else float(weight)))
            members = tuple(parsed)
        try:
            return ColorPalette(name=palette_name, members=members)
        except InvalidRequest as exc:
            raise InvalidRequest(self.prefix + exc.field, exc.rule) from None

    # ------------------------------------------------------------ files

    def file(self, key: str, required: bool = True) -> ImageInput | None:
        self.read.add(key)
        uploads = self.files.get(key) or []
        if not uploads:
            if self._raw(key) not in (None, ""):
                raise InvalidRequest(key, "must be sent as a file part (multipart/form-data with a filename)")
            if required:
                raise InvalidRequest(key, "is required: send the image as a multipart file part")
            return None
        if len(uploads) > 1:
            raise InvalidRequest(key, "only one file is allowed")
        up = uploads[0]
        return read_image(key, up.data, self.limits, up.filename)

    def file_list(self, key: str) -> tuple[ImageInput, ...] | None:
        self.read.add(key)
        uploads = self.files.get(key) or []
        if not uploads:
            return None
        return tuple(read_image(key, up.data, self.limits, up.filename) for up in uploads)


_FILE_FIELDS = frozenset(
    {"image_file", "image", "mask", "style_reference_images", "character_reference_images",
     "character_reference_images_mask"}
)


def build(cls: type, prefix: str = "", **kwargs: Any) -> Any:
    """Construct a canonical request; domain rule errors get the dialect's field prefix
    (``image_request.`` for legacy JSON fields; file parts live outside it)."""
    try:
        return cls(**kwargs)
    except InvalidRequest as exc:
        root = re.split(r"[.\[]", exc.field)[0]
        if prefix and root not in _FILE_FIELDS:
            raise InvalidRequest(prefix + exc.field, exc.rule) from None
        raise
