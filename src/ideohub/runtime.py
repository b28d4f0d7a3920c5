"""One process's parts, each built on first use and once: the database and its secrets, storage,
the URL signer, prices, limits, engines, the dispatch (in-process or the Redis queue) and the
generation path (``Service``). ``serve``, ``worker``, the CLI commands, the benches and the
tests all build from here, so a CLI command that only reads the database never loads an engine
or connects to Redis.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from functools import cached_property
from typing import Any

import anyio

from .config import Settings
from .domain.operations import Operation
from .engines.base import WorkerPool
from .observability import Metrics


class Runtime:
    def __init__(self, settings: Settings, *, engines: dict[Operation, Any] | None = None,
                 clock: Callable[[], float] | None = None, operations: set[Operation] | None = None,
                 render: Callable[[Any], bytes] | None = None, instance_id: str | None = None) -> None:
        """``engines``: exactly these (tests) instead of what the settings configure; ``clock``: the
        monotonic clock of time-dependent state (tests); ``operations``: what a worker declared."""
        self.settings = settings
        self._given_engines = engines
        self.clock = clock
        self.operations = operations
        self.render = render
        self.instance_id = instance_id
        self._built: dict[str, Any] = {}

    # ------------------------------------------------------------ plain parts

    @cached_property
    def metrics(self) -> Metrics:
        return Metrics()

    @cached_property
    def pool(self) -> WorkerPool:
        return WorkerPool(self.settings.workers, self.settings.queue_size)

    @cached_property
    def prices(self) -> Any:
        from .domain.prices import PriceError, PriceTable
        from .engines.registry import ConfigError

        try:
            return PriceTable.load(overrides=self.settings.prices, groups=self.settings.groups)
        except PriceError as exc:
            raise ConfigError(str(exc)) from None

    @cached_property
    def limiter(self) -> Any:
        """Per-process limits by default; shared through Redis when ``redis_url`` is set."""
        s = self.settings
        lease_s = s.request_timeout_s + s.reservation_grace_s
        if s.redis_url:
            from .gate.redis import RedisLimiter

            return RedisLimiter(s.redis_url, lease_s=lease_s, clock=self.clock)
        from .gate.limits import MemoryLimiter

        return MemoryLimiter(lease_s=lease_s, clock=self.clock) if self.clock else MemoryLimiter(lease_s=lease_s)

    # ------------------------------------------------------------ parts that open connections

    async def secrets(self) -> Any:
        if "secrets" not in self._built:
            from .store import db
            from .store.secrets import open_secrets

            if self.settings.db_url.startswith("sqlite"):  # PostgreSQL is migrated by `ideohub db upgrade`
                await anyio.to_thread.run_sync(db.upgrade, self.settings.db_url)
            # PostgreSQL: enough pooled connections for a worker's or an instance's concurrent generations
            # (SQLAlchemy's default 5 + 10 made a busy fleet open new connections per generation)
            pooled = {} if self.settings.db_url.startswith("sqlite") else {"pool_size": 20, "max_overflow": 20}
            engine = db.create_engine_async(self.settings.db_url, **pooled)
            self._built["db_engine"] = engine
            self._built["secrets"] = await open_secrets(self.settings, engine)
        return self._built["secrets"]

    async def repo(self) -> Any:
        if "repo" not in self._built:
            from .store.repository import Repository

            secrets = await self.secrets()
            self._built["repo"] = Repository(self._built["db_engine"], secrets.key_pepper)
        return self._built["repo"]

    async def storage(self) -> Any:
        if "storage" not in self._built:
            from .media.storage import make_storage

            self._built["storage"] = make_storage(self.settings)
        return self._built["storage"]

    async def signer(self) -> Any:
        if "signer" not in self._built:
            from .media.signing import UrlSigner

            secrets = await self.secrets()  # the ring as the database has it: rotations apply without a restart
            self._built["signer"] = UrlSigner(secrets.signing_key_source, None, self.settings.base_url,
                                              self.settings.url_ttl_s)
        return self._built["signer"]

    async def engines(self) -> dict[Operation, Any]:
        """The engines this process runs: none on an API instance of a fleet (its workers do)."""
        if "engines" not in self._built:
            if self._given_engines is not None:
                engines = self._given_engines
            elif self.settings.queue_url and self.operations is None:
                engines = {}
            else:
                from .engines.registry import EngineResources, build_engines

                repo = await self.repo()
                await self._config_channels(repo)
                res = EngineResources(self.settings, self.metrics, repo.session, await self.secrets(), self.clock)
                engines = build_engines(res, only=self.operations)
            self._built["engines"] = engines
        return self._built["engines"]

    async def _config_channels(self, repo: Any) -> None:
        """Channels declared in the config file are written to the database at start-up."""
        if not self.settings.channels:
            return
        from .engines.registry import ConfigError
        from .engines.relay.channel_store import ChannelStore
        from .engines.relay.channels import SecretBox, channel_from_options

        store = ChannelStore(repo.session, SecretBox((await self.secrets()).channel_key))
        for options in self.settings.channels:
            try:
                channel = channel_from_options(options)
            except (ValueError, TypeError) as exc:
                raise ConfigError(f"channels: {exc}") from None
            await store.upsert(channel, source="config")

    async def dispatch(self) -> Any:
        """The Redis queue with ``queue_url``; else None (the service runs everything in-process)."""
        if "dispatch" not in self._built:
            dispatch = None
            s = self.settings
            if s.queue_url:
                from .dispatch.redis import RedisDispatch

                dispatch = RedisDispatch(s.queue_url, idle_timeout_s=s.stale_after_s)
            self._built["dispatch"] = dispatch
        return self._built["dispatch"]

    async def classifier(self) -> Any:
        if not self.settings.safety_check:
            return None
        from .engines.safety import SafetyClassifier

        return SafetyClassifier(threshold=self.settings.safety_threshold)

    async def service(self) -> Any:
        if "service" not in self._built:
            from .service import Service
            from .store.ledger import Ledger

            repo = await self.repo()
            service = Service(self.settings, repo, await self.storage(), await self.signer(), await self.engines(),
                              self.pool, self.metrics, ledger=Ledger(repo.session), prices=self.prices,
                              limiter=self.limiter, render=self.render, instance_id=self.instance_id,
                              dispatch=await self.dispatch(), classifier=await self.classifier())
            self._built["dispatch"] = service.dispatch  # the in-process one, when there is no queue
            self._built["service"] = service
        return self._built["service"]

    # ------------------------------------------------------------ closing

    async def aclose(self) -> None:
        """Close what was built, newest first; never raises for one part's failure."""
        built = self._built
        if built.get("dispatch") is not None:
            await built["dispatch"].aclose()
        if "pool" in self.__dict__:
            self.pool.shutdown()
        for engine in {id(e): e for e in (built.get("engines") or {}).values()}.values():
            if hasattr(engine, "aclose"):
                await engine.aclose()
        if "limiter" in self.__dict__:
            await self.limiter.aclose()
        if "storage" in built and hasattr(built["storage"], "aclose"):
            await built["storage"].aclose()
        if "secrets" in built and hasattr(built["secrets"], "aclose"):
            await built["secrets"].aclose()
        if "repo" in built:
            built["repo"].tx.dispose()
        if "db_engine" in built:
            await built["db_engine"].dispose()
        self._built = {}



async def every(seconds: float, job: Callable[[], Awaitable[Any]], what: str) -> None:
    """Run ``job`` now and then every ``seconds`` (a process's background loops: sweeper, heartbeat,
    reconciler); a failure is logged and retried next time."""
    while True:
        try:
            await job()
        except Exception:
            logging.getLogger("ideohub").exception("%s failed; retrying at the next interval", what)
        await asyncio.sleep(seconds)
