"""Signed, expiring image URLs: ``/images/<name>?exp=<unix>&kid=<key id>&sig=<hex HMAC-SHA256>``.

The key id lets the signing secret rotate: new links use the active key, old links keep
verifying while their key is still configured.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from urllib.parse import urlencode

from ..domain.errors import IdeohubError


class LinkForbidden(IdeohubError):
    status = 403
    title = "Forbidden"


class LinkExpired(IdeohubError):
    status = 410
    title = "Gone"


class UrlSigner:
    def __init__(self, keys: dict[str, bytes], active_kid: str, base_url: str, ttl_s: int) -> None:
        self._keys = keys
        self._kid = active_kid
        self.base_url = base_url.rstrip("/")
        self.ttl_s = ttl_s

    def _sig(self, key: bytes, name: str, exp: int) -> str:
        return hmac.new(key, f"{name}\n{exp}".encode(), hashlib.sha256).hexdigest()

    def sign(self, name: str, now: float | None = None) -> tuple[str, int]:
        """The public URL for a stored object, and its expiry (unix seconds)."""
        exp = int(now if now is not None else time.time()) + self.ttl_s
        query = urlencode({"exp": exp, "kid": self._kid, "sig": self._sig(self._keys[self._kid], name, exp)})
        return f"{self.base_url}/images/{name}?{query}", exp

    def verify(self, name: str, exp: str | None, kid: str | None, sig: str | None, now: float | None = None) -> int:
        """Raise 403 for a missing or tampered signature, 410 once expired; return ``exp``."""
        if not exp or not kid or not sig or not exp.isdigit():
            raise LinkForbidden("the link is missing its exp, kid or sig parameter")
        key = self._keys.get(kid)
        if key is None or not hmac.compare_digest(self._sig(key, name, int(exp)), sig):
            raise LinkForbidden("the link's signature is not valid")
        if int(exp) <= (now if now is not None else time.time()):
            raise LinkExpired("the link has expired; images are kept for a limited time")
        return int(exp)
