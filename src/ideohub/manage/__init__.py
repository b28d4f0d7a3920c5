"""The management layer: accounts, credit, keys and their limits, channels, prices, the request
log and the dashboard's figures — one set of rules (money parsing, defaults, validation) behind
the CLI (``ideohub …``), the admin API (``/admin/*``), the key holders' API (``/v2/account/*``)
and the console. Callers differ only in how they present a result or an error.

Errors are domain errors (``InvalidRequest`` names the field and the rule, ``NotFound``,
``manage.errors.Conflict``), so HTTP callers answer them as problem JSON and the CLI prints them.

Built from an API instance's state (``Manager.of_state``) or from settings, a repository and the
database's channel key (the CLI). Nothing here imports the web stack.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any

from ..config import Settings
from ..store.ledger import Ledger
from ..store.repository import Repository
from .accounts import Accounts
from .errors import Conflict
from .keys import Keys
from .requests import Requests

if TYPE_CHECKING:
    from .channels import Channels

__all__ = ["Conflict", "Manager"]


class Manager:
    def __init__(self, settings: Settings, repo: Repository, *, channel_key: bytes | None = None,
                 ledger: Ledger | None = None, prices: Any = None, signer: Any = None,
                 engines: dict[Any, Any] | None = None, source: str = "cli") -> None:
        """``engines``: this process's engines (the relay's router gives live channel state and
        takes edits at once); ``source``: what channel edits are recorded as (cli | api)."""
        self.settings = settings
        self.repo = repo
        self.ledger = ledger or Ledger(repo.session)
        self._channel_key = channel_key
        self._prices = prices
        self.signer = signer
        self.engines = engines or {}
        self.source = source

    @classmethod
    def of_state(cls, state: Any) -> Manager:
        """The manager of an API instance (``api.app.AppState``)."""
        secrets = state.secrets
        return cls(state.settings, state.repo, channel_key=secrets.channel_key if secrets is not None else None,
                   ledger=state.service.ledger, prices=state.service.prices, signer=state.signer,
                   engines=state.service.engines, source="api")

    @cached_property
    def accounts(self) -> Accounts:
        return Accounts(self.settings, self.ledger)

    @cached_property
    def keys(self) -> Keys:
        return Keys(self.settings, self.repo, self.ledger)

    @cached_property
    def requests(self) -> Requests:
        return Requests(self.settings, self.repo, self.signer)

    @property
    def price_table(self) -> Any:
        if self._prices is None:
            from ..domain.prices import PriceTable

            self._prices = PriceTable.load(overrides=self.settings.prices, groups=self.settings.groups)
        return self._prices

    def prices(self) -> dict[str, Any]:
        from .prices import price_view

        return price_view(self.price_table, self.settings.prices)

    async def stats(self, hours: object = None, bucket: object = None, operation: object = None,
                    channel: object = None) -> dict[str, Any]:
        from .stats import stats

        return await stats(self.repo.session, hours, bucket, operation=operation, channel=channel)

    async def usage(self, days: object = 30, by: object = None) -> dict[str, list[dict[str, Any]]]:
        from .stats import usage

        return await usage(self.repo.session, days, by)

    def _relays(self) -> list[Any]:
        """This process's relay engines (each serves many operations: one of each)."""
        return list({id(e): e for e in self.engines.values()
                     if hasattr(e, "router") and hasattr(e, "directory")}.values())

    def channels(self, live: Any = None) -> Channels:
        from ..engines.relay.channel_store import ChannelStore
        from ..engines.relay.channels import SecretBox
        from ..store.usage import channel_totals
        from .channels import RECENT_ERRORS, Channels

        if self._channel_key is None:
            raise RuntimeError("the channel key is needed to manage channels")
        relays = self._relays()
        if live is None and relays:
            live = relays[0].router
        session = self.repo.session
        return Channels(ChannelStore(session, SecretBox(self._channel_key)), source=self.source, live=live,
                        reloaders=[r.directory.invalidate for r in relays],
                        window=lambda since: channel_totals(session, since, recent_errors=RECENT_ERRORS))

    async def shared_live_state(self) -> Any | None:
        """Without a relay engine here (a fleet's API instance) the channel state lives in Redis:
        a short-lived reader of it, or None. The caller closes it."""
        if self._relays() or not self.settings.redis_url:
            return None
        from ..engines.relay.redis_state import RedisChannelState

        return RedisChannelState(self.settings.redis_url)
