"""Text and JSON from outside (clients, upstreams, webhook targets): decoded with limits,
checked, and redacted before it is echoed, logged or stored.

One place for the rules, so a client body, an upstream answer and an upstream error
message are held to the same ones:

- ``loads``: JSON with no NaN/Infinity, no number longer than ``MAX_NUMBER_CHARS`` (Python's
  ``int()`` refuses 4,300+ digits with a ValueError that used to escape as a 500), bounded
  nesting, and no lone surrogates (``"\\ud800"`` decodes fine but cannot be encoded again: it
  used to fail while we built the upstream request, and was blamed on the channel).
- ``check_text``: what a text field may hold (length, encodable, no control characters).
- ``redact``: credentials and our own header values removed from text we did not write.
- ``printable``: safe to store (no NUL, which PostgreSQL's TEXT refuses) and to log.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from typing import Any

MAX_NUMBER_CHARS = 40  # far beyond any real seed, weight or size; far below int()'s 4,300-digit limit
MAX_DEPTH = 64  # nesting; Ideogram's deepest body (a V4 JSON prompt) is under ten levels


class UntrustedJSON(ValueError):
    """Not acceptable JSON. ``str()`` is a short reason, safe to show."""


class OutOfRange:
    """A JSON number too long to be a real value. Kept as a marker rather than refused at
    decode time, so the error can name the field that held it (``Fields`` does), and a
    number in a field nobody reads stays as harmless as other unknown fields."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return f"OutOfRange({self.text[:20]}…)"


def _parse_int(text: str) -> int | OutOfRange:
    return int(text) if len(text) <= MAX_NUMBER_CHARS else OutOfRange(text)


def _parse_float(text: str) -> float | OutOfRange:
    if len(text) > MAX_NUMBER_CHARS:
        return OutOfRange(text)
    value = float(text)
    return value if math.isfinite(value) else OutOfRange(text)


def _no_constant(name: str) -> Any:
    raise UntrustedJSON(f"{name} is not valid JSON")


def loads(data: bytes | str) -> Any:
    """Decode JSON from outside; raise ``UntrustedJSON`` with a short reason."""
    try:
        value = json.loads(data, parse_int=_parse_int, parse_float=_parse_float, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise UntrustedJSON(f"{exc.msg} at position {exc.pos}") from None
    except UnicodeDecodeError:
        raise UntrustedJSON("not UTF-8") from None
    except RecursionError:
        raise UntrustedJSON("nested too deeply") from None
    _check_tree(value)
    return value


def _check_tree(value: Any) -> None:
    """Depth and string checks over a decoded value, iteratively (no recursion to exhaust)."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, str):
            if not node.isascii() and not _encodable(node):
                raise UntrustedJSON("a string holds an unpaired surrogate (\\ud800-\\udfff)")
        elif isinstance(node, (dict, list)):
            if depth >= MAX_DEPTH:
                raise UntrustedJSON(f"nested more than {MAX_DEPTH} levels deep")
            items: Iterable[Any] = node.items() if isinstance(node, dict) else node
            for item in items:
                if isinstance(node, dict):
                    key, val = item
                    stack.append((key, depth + 1))
                    stack.append((val, depth + 1))
                else:
                    stack.append((item, depth + 1))


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def check_text(text: str, max_chars: int) -> str | None:
    """Why ``text`` is not acceptable as a text field, or None. Tab, LF and CR are allowed."""
    if len(text) > max_chars:
        return f"must be at most {max_chars} characters (got {len(text)})"
    if not text.isascii() and not _encodable(text):
        return "must be valid Unicode text (it holds an unpaired surrogate)"
    if _CONTROL.search(text):
        return "must not contain control characters"
    return None


# ---------------------------------------------------------------- redaction

REDACTED = "[redacted]"
# Header lines and JSON-ish pairs of credential-bearing names, whatever follows them.
_NAMED = re.compile(
    r"(?i)(\"?(?:authorization|proxy-authorization|api[-_]?key|x-api-key|cookie|set-cookie|x-ideohub-[a-z-]+|"
    r"token|access[-_]?token|secret|password|sig|signature)\"?\s*[:=]\s*)(\"[^\"]*\"|'[^']*'|bearer\s+\S+|basic\s+\S+|[^\s,;&}]+)"
)
_SCHEME = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}")
# Long opaque tokens: API keys (ours are ih_ + 43 URL-safe characters), JWTs, hex secrets.
_TOKEN = re.compile(r"\b(?:ih_|sk-|sk_|pk_|key-)?[A-Za-z0-9_-]{32,}(?:\.[A-Za-z0-9_-]{8,}){0,2}\b")
_URL_CREDENTIALS = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s:@]+(?::[^/\s@]*)?@")


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with anything that looks like a credential replaced by ``[redacted]``: the
    given secrets verbatim, credential-named fields and headers, bearer/basic tokens, long
    opaque tokens, and user:password in URLs."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, REDACTED)
    text = _URL_CREDENTIALS.sub(lambda m: m.group(1) + REDACTED + "@", text)
    text = _NAMED.sub(lambda m: m.group(1) + REDACTED, text)
    text = _SCHEME.sub(lambda m: m.group(1) + " " + REDACTED, text)
    return _TOKEN.sub(REDACTED, text)


def printable(text: str, max_chars: int = 500) -> str:
    """Safe to store and log: control characters (NUL included) and unpaired surrogates
    replaced, newlines flattened, at most ``max_chars`` characters."""
    if not text.isascii():
        text = text.encode("utf-8", "replace").decode("utf-8")
    text = _CONTROL.sub("?", text).replace("\r", " ").replace("\n", " ")
    return text if len(text) <= max_chars else text[: max_chars - 1] + "…"


def outside_text(text: str, secrets: Iterable[str] = (), max_chars: int = 300) -> str:
    """Text we did not write (an upstream error message), made fit to echo and store."""
    return printable(redact(text, secrets), max_chars)
