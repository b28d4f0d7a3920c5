"""Signed, expiring image URLs: ``/images/<name>?exp=<unix>&kid=<key id>&sig=<hex HMAC-SHA256>``.

The key id lets the signing secret rotate: new links use the active key, old links keep
verifying while their key is still configured. The keys come from a ``signing_keys.KeySource``
(on a server: ``store.secrets``, which follows ``ideohub rotate-signing-key`` without a restart).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping
from urllib.parse import urlencode

from ..domain.errors import IdeohubError
from .signing_keys import KeySource, StaticKeys


class LinkForbidden(IdeohubError):
    status = 403
    title = "Forbidden"


class LinkExpired(IdeohubError):
    status = 410
    title = "Gone"


class UrlSigner:
    def __init__(self, keys: Mapping[str, bytes] | KeySource, active_kid: str | None, base_url: str,
                 ttl_s: int) -> None:
        """``keys``: a fixed mapping (then ``active_kid`` names the signing key) or a key source
        (then ``active_kid`` is ignored: the source says which key is active)."""
        if isinstance(keys, Mapping):
            if active_kid is None:
                raise ValueError("a fixed key mapping needs active_kid")
            keys = StaticKeys(keys, active_kid)
        self._source: KeySource = keys
        self.base_url = base_url.rstrip("/")
        self.ttl_s = ttl_s

    @property
    def active_kid(self) -> str:
        return self._source.current().active

    def _sig(self, key: bytes, name: str, exp: int) -> str:
        return hmac.new(key, f"{name}\n{exp}".encode(), hashlib.sha256).hexdigest()

    def sign(self, name: str, now: float | None = None) -> tuple[str, int]:
        """The public URL for a stored object, and its expiry (unix seconds)."""
        exp = int(now if now is not None else time.time()) + self.ttl_s
        ring = self._source.current()
        kid = ring.active
        query = urlencode({"exp": exp, "kid": kid, "sig": self._sig(ring.keys[kid], name, exp)})
        return f"{self.base_url}/images/{name}?{query}", exp

    def verify(self, name: str, exp: str | None, kid: str | None, sig: str | None, now: float | None = None) -> int:
        """Raise 403 for a missing or tampered signature, 410 once expired; return ``exp``."""
        if not exp or not kid or not sig or not (exp.isascii() and exp.isdigit()) or len(exp) > 16:
            raise LinkForbidden("the link is missing its exp, kid or sig parameter")
        key = self._source.current().keys.get(kid)
        if key is None and len(kid) <= 32:  # perhaps added by another process a moment ago
            try:
                key = self._source.refresh().keys.get(kid)
            except (OSError, ValueError):  # the keys cannot be read now: the link is checked against what we had
                key = None
        if key is None or not hmac.compare_digest(self._sig(key, name, int(exp)), sig):
            raise LinkForbidden("the link's signature is not valid")
        if int(exp) <= (now if now is not None else time.time()):
            raise LinkExpired("the link has expired; images are kept for a limited time")
        return int(exp)
