"""Where a webhook or task callback may be sent: ``https`` to a host whose every address is
public — never loopback, private, link-local or cloud-metadata addresses — checked when the
generation is submitted and again, by the same guard, when each delivery connects (to the
address it checked). ``webhook_allowed_hosts`` (names or addresses) lifts both rules for the
hosts an operator names (an internal receiver; the tests' local one)."""

from __future__ import annotations

import ipaddress

from ..domain.errors import InvalidRequest
from ..net.guard import GuardPolicy, Origin, Refused, Resolver, check_url, system_resolver

MAX_URL_CHARS = 2048  # Ideogram's WebhookUrl maxLength


class TargetPolicy:
    def __init__(self, allowed_hosts: list[str] | tuple[str, ...] = (), resolver: Resolver = system_resolver) -> None:
        self.allowed = {h.strip().lower().strip("[]") for h in allowed_hosts if h.strip()}
        self.resolver = resolver

    def is_allowed_host(self, host: str) -> bool:
        return host.lower().strip("[]") in self.allowed

    def guard(self, origin: Origin) -> GuardPolicy:
        """The delivery guard for one target: an allowed host's own origin may be private."""
        policy = GuardPolicy()
        return policy.trusting(origin) if self.is_allowed_host(origin.host) else policy

    async def check(self, url: str, field: str) -> Origin:
        """The target's origin, or a 400 naming ``field`` and the rule it breaks."""
        if len(url) > MAX_URL_CHARS:
            raise InvalidRequest(field, f"must be at most {MAX_URL_CHARS} characters")
        try:
            origin = check_url(url)
        except Refused as exc:
            raise InvalidRequest(field, f"must be an absolute https URL ({exc})") from None
        if self.is_allowed_host(origin.host):
            return origin
        if origin.scheme != "https":
            raise InvalidRequest(field, "must be an https URL")
        try:
            addresses = [str(ipaddress.ip_address(origin.host))]
        except ValueError:
            try:
                addresses = await self.resolver(origin.host, origin.port)
            except OSError:
                raise InvalidRequest(field, f"its host {origin.host} cannot be resolved") from None
        try:  # the delivery guard's own rule, so submission and delivery cannot disagree
            self.guard(origin).allowed_addresses(origin, addresses)
        except Refused:
            raise InvalidRequest(field, "must not point at a loopback, private, link-local or metadata address") from None
        return origin
