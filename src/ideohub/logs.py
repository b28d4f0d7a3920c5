"""Logs as JSON lines: one object per line on stderr, from every logger (ours, uvicorn's,
libraries'), with secrets, signed URLs and query strings scrubbed out.

Every line has ``ts`` (ISO 8601 UTC, milliseconds, ``Z``), ``level`` (``debug`` … ``critical``)
and ``logger``; then either ``message`` (plain text) or an event's own fields — the access log
(``ideohub.access``: ``request_id``, ``method``, ``path``, ``status``, ``ms``, ``engine_ms``,
``key_id``, ``operation``, and ``prompt`` only with ``log_prompts``) and the sweeper's lines are
events. An exception adds ``exception`` (its traceback, as one JSON string). Event fields never
replace the fixed ones.

An event is logged with ``log.info("request", extra={"fields": {...}})`` (``event(...)`` below);
a message that is itself a JSON object is read as an event too, so older ``log.info(json.dumps(...))``
calls come out the same way.

httpx and httpcore are held at WARNING: their INFO line per call carried full upstream URLs.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, TextIO

from .domain.untrusted import REDACTED, printable, redact

FIXED_FIELDS = ("ts", "level", "logger")
QUIET = {"httpx": logging.WARNING, "httpcore": logging.WARNING}  # per-call INFO lines with full URLs
UVICORN = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")
MAX_FIELD_CHARS = 4000  # a prompt or an error text; a traceback gets MAX_EXCEPTION_CHARS
MAX_EXCEPTION_CHARS = 20_000

# a query string after a URL or a path (``?exp=…&kid=…&sig=…``), and signing parameters anywhere
_QUERY = re.compile(r"(?<=[\w/.\-\]])\?[^\s\"'<>]+")  # any query string after a URL or path, with or without "="
_SIGNING_PARAM = re.compile(r"(?i)\b(exp|kid|sig)=[^\s&\"'<>]+")


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` fit for a log line: no query strings, no signing parameters, no credentials
    (``domain.untrusted.redact``: the given secrets, tokens, credential-named fields)."""
    text = _QUERY.sub("", text)
    text = _SIGNING_PARAM.sub(lambda m: f"{m.group(1)}={REDACTED}", text)
    return redact(text, secrets)


class ScrubFilter(logging.Filter):
    """Renders the message and scrubs it, the event fields and the traceback, on the record
    itself (so every handler after it sees the scrubbed record)."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets: list[str] = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_ideohub_scrubbed", False):
            return True
        message = record.getMessage()
        fields = getattr(record, "fields", None)
        if not isinstance(fields, Mapping):
            fields = _json_object(message)
        if fields is not None:
            record.fields = {str(k): self._value(v) for k, v in fields.items()}
        record.msg, record.args = self._text(message, MAX_FIELD_CHARS), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self._text(record.exc_text, MAX_EXCEPTION_CHARS, flatten=False)
        if record.stack_info:
            record.stack_info = self._text(record.stack_info, MAX_EXCEPTION_CHARS, flatten=False)
        record._ideohub_scrubbed = True
        return True

    def _text(self, text: str, limit: int, flatten: bool = True) -> str:
        text = scrub(text, self.secrets)
        if flatten:
            return printable(text, limit)
        # keep the traceback's newlines (JSON escapes them), drop other control characters
        return "\n".join(printable(line, limit) for line in text.splitlines())[:limit]

    def _value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self._text(value, MAX_FIELD_CHARS)
        if value is None or isinstance(value, (bool, int, float)):
            return value
        return self._text(str(value), MAX_FIELD_CHARS)


def _json_object(message: str) -> dict[str, Any] | None:
    if not (message.startswith("{") and message.endswith("}")):
        return None
    try:
        value = json.loads(message)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


class JsonFormatter(logging.Formatter):
    """One JSON object per record, ASCII only (so no character a reader takes for a line break)."""

    def format(self, record: logging.LogRecord) -> str:
        obj: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, Mapping) and fields:
            for key, value in fields.items():
                obj.setdefault(str(key), value)
        else:
            obj["message"] = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            obj["exception"] = record.exc_text
        if record.stack_info:
            obj["stack"] = record.stack_info
        return json.dumps(obj, ensure_ascii=True, default=str, separators=(", ", ": "))


def event(logger: logging.Logger, level: int, name: str, /, **fields: Any) -> None:
    """Log an event: ``fields`` become the line's own fields."""
    if logger.isEnabledFor(level):
        logger.log(level, name, extra={"fields": fields})


_installed: list[ScrubFilter] = []


def add_secrets(values: Iterable[str]) -> None:
    """Strings never to print from now on (e.g. upstream channel keys as they are loaded);
    long tokens and credential-shaped text are scrubbed anyway, this catches short ones."""
    for f in _installed:
        f.secrets.extend(v for v in values if v and len(v) >= 4 and v not in f.secrets)


def configure_logging(level: str | int = "INFO", *, secrets: Iterable[str] = (),
                      stream: TextIO | None = None) -> logging.Handler:
    """Install the JSON-lines handler on the root logger (replacing one installed before),
    at ``level`` (a name such as ``"info"`` or a number); route uvicorn's loggers through it and
    quiet httpx/httpcore. ``secrets``: strings never to print (admin and metrics tokens).
    Returns the handler (tests remove it). uvicorn must be started with ``log_config=None``,
    or it installs its own text handlers over these."""
    numeric = logging.getLevelName(level.upper()) if isinstance(level, str) else level
    if not isinstance(numeric, int):
        raise ValueError(f"log_level: unknown level {level!r}; use debug, info, warning, error or critical")
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_ideohub_json", False)]:
        root.removeHandler(old)
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler._ideohub_json = True  # type: ignore[attr-defined]
    handler.setFormatter(JsonFormatter())
    scrubber = ScrubFilter(secrets)
    handler.addFilter(scrubber)
    _installed[:] = [scrubber]
    root.addHandler(handler)
    root.setLevel(numeric)
    for name in UVICORN:
        lg = logging.getLogger(name)
        lg.handlers.clear()
        lg.propagate = True
    for name, quiet in QUIET.items():
        logging.getLogger(name).setLevel(max(quiet, numeric))
    return handler
