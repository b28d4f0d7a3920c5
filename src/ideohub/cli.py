"""``ideohub`` command line: serve, keys, db. Every command takes ``--data-dir`` and
``--config`` (or ``IDEOHUB_DATA_DIR`` / ``IDEOHUB_CONFIG``), so a key created here works at
once on a server running over the same data directory.

Scripts read the last line of stdout: ``keys create`` prints the key alone there.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from .config import Settings, load_settings
from .store import db

if TYPE_CHECKING:  # imported when a command needs it: `--help` stays quick
    from .manage import Manager
    from .store.repository import Repository
    from .store.secrets import Secrets

T = TypeVar("T")

app = typer.Typer(help="ideohub: the Ideogram image API, self-hosted.", no_args_is_help=True, add_completion=False)
keys_app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)
db_app = typer.Typer(help="Database migrations.", no_args_is_help=True)
channels_app = typer.Typer(help="Upstream channels for the relay engine (take effect on running servers within a second).",
                           no_args_is_help=True)
accounts_app = typer.Typer(help="Prepaid accounts.", no_args_is_help=True)
requests_app = typer.Typer(help="The request log: what was asked, what it cost, how it went.", no_args_is_help=True)
app.add_typer(accounts_app, name="accounts")
app.add_typer(keys_app, name="keys")
app.add_typer(channels_app, name="channels")
app.add_typer(requests_app, name="requests")
app.add_typer(db_app, name="db")

err = Console(stderr=True)

DataDir = Annotated[Path | None, typer.Option("--data-dir", help="Data directory [env: IDEOHUB_DATA_DIR]")]
ConfigFile = Annotated[Path | None, typer.Option("--config", help="TOML config file [env: IDEOHUB_CONFIG]")]


def _settings(data_dir: Path | None, config: Path | None, **overrides: object) -> Settings:
    try:
        return load_settings(data_dir=data_dir, config=config, **overrides)
    except (FileNotFoundError, ValueError) as exc:
        err.print(f"[red]configuration error:[/red] {exc}")
        raise typer.Exit(2) from None


def _with_db(settings: Settings, fn: Callable[[Repository, Secrets], Awaitable[T]]) -> T:
    """Run ``fn`` on a ready database and its secrets: SQLite is migrated if behind (Alembic runs
    only then); PostgreSQL that is unreachable or not migrated, or secrets sealed under another
    master secret (store.secrets), are one line of advice and exit 1."""
    from .store.repository import Repository
    from .store.secrets import open_secrets

    async def go() -> T:
        engine = db.create_engine_async(settings.db_url)
        try:
            secrets = await open_secrets(settings, engine)  # the pepper first: the repository hashes keys with it
            return await fn(Repository(engine, secrets.key_pepper), secrets)
        finally:
            await engine.dispose()

    try:
        db.ready(settings.db_url)
        return asyncio.run(go())
    except db.DatabaseError as exc:  # includes store.secrets.SecretsError (a wrong secret_key: WrongSecretKey)
        err.print(f"error: {exc}", soft_wrap=True, markup=False, highlight=False)
        raise typer.Exit(1) from None


def _with_repo(settings: Settings, fn: Callable[[Repository], Awaitable[T]]) -> T:
    return _with_db(settings, lambda repo, _secrets: fn(repo))


# The CLI's names for the fields the management layer's errors name (``manage`` has one rule per
# field for the CLI, the admin API and the console; only the names a user typed differ).
CLI_FIELDS = {"usd": "USD", "note": "--note", "rpm": "--rpm", "max_images_in_flight": "--max-images-in-flight",
              "spend_cap_usd": "--spend-cap", "allowed_operations": "--operations", "account_id": "--account",
              "expires_at": "--expires-in-days", "group": "--group", "days": "--days", "hours": "--hours",
              "bucket": "--bucket", "operation": "--operation", "channel": "--channel", "key_id": "--key",
              "state": "--state", "status_code": "--status", "since": "--since", "until": "--until",
              "limit": "--limit", "before": "--before"}


def _manage(settings: Settings, fn: Callable[[Manager], Awaitable[T]], *, prefix: str = "") -> T:
    """Run ``fn`` on the management layer; its errors become one line on stderr: a bad value
    exits 2 (naming the CLI's option), something missing or in the way exits 1."""
    from .domain.errors import IdeohubError, InvalidRequest
    from .manage import Manager

    try:
        return _with_db(settings, lambda repo, secrets: fn(Manager(settings, repo, channel_key=secrets.channel_key)))
    except InvalidRequest as exc:
        field = CLI_FIELDS.get(exc.field, exc.field)
        detail = exc.detail if exc.detail != f"{exc.field}: {exc.rule}" else f"{field}: {exc.rule}"
        err.print(prefix + detail, markup=False, highlight=False, soft_wrap=True, style="red")
        raise typer.Exit(2) from None
    except IdeohubError as exc:  # NotFound, Conflict
        err.print(prefix + exc.detail, markup=False, highlight=False, soft_wrap=True, style="red")
        raise typer.Exit(1) from None


def _fail(message: str, code: int = 1) -> typer.Exit:
    """A start-up failure: one line on stderr saying what to do, no traceback."""
    import sys

    print(f"error: {message}", file=sys.stderr, flush=True)
    return typer.Exit(code)


def _serve_settings(data_dir: Path | None, config: Path | None, **overrides: object) -> Settings:
    from pydantic import ValidationError

    try:
        return load_settings(data_dir=data_dir, config=config, **overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "settings"
        raise _fail(f"configuration error: {where}: {first.get('msg', 'invalid')} "
                    f"(fix the config file or the IDEOHUB_* variable)", 2) from None
    except (FileNotFoundError, ValueError) as exc:
        raise _fail(f"configuration error: {str(exc).strip().splitlines()[0]}", 2) from None


def _check_database(settings: Settings) -> None:
    """The database must be reachable and at our schema before anything else loads: SQLite in
    the data directory migrates itself; PostgreSQL is migrated only by ``ideohub db upgrade``."""
    from .api.server import ServerStartError

    try:
        db.ready(settings.db_url)
    except db.DatabaseError as exc:  # unreachable, not migrated, or migrated by a newer version
        raise ServerStartError(str(exc)) from None


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address [env: IDEOHUB_HOST]")] = None,
    port: Annotated[int | None, typer.Option(help="Port; 0 picks a free one [env: IDEOHUB_PORT]")] = None,
    data_dir: DataDir = None,
    config: ConfigFile = None,
) -> None:
    """Run the API server (SQLite and local disk by default). A start-up failure (port in use,
    bad configuration, database unreachable or not migrated) exits non-zero with one line."""
    from .api.server import ServerStartError, TrustedProxies, bind_listener, one_line, run_server

    settings = _serve_settings(data_dir, config, host=host, port=port)
    from .logs import configure_logging

    try:
        configure_logging(settings.log_level,
                          secrets=[t for t in (settings.admin_token, settings.metrics_token, settings.secret_key,
                                               settings.s3_secret_access_key) if t])
    except ValueError as exc:
        raise _fail(f"configuration error: log_level: {exc}", 2) from None
    logging.getLogger("alembic").setLevel(logging.WARNING)  # SQLite migrating itself at start is routine
    try:
        TrustedProxies(settings.trusted_proxies)
    except ServerStartError as exc:
        raise _fail(f"configuration error: {exc}", 2) from None
    try:
        sock = bind_listener(settings.host, settings.port)  # first, so a busy port fails before anything loads
    except ServerStartError as exc:
        raise _fail(str(exc)) from None
    ready = False

    def announce() -> None:
        nonlocal ready
        ready = True
        err.print(f"ideohub listening on http://{settings.host}:{settings.port} (public URL {settings.base_url})",
                  soft_wrap=True)

    async def first_key(m: Manager) -> str | None:
        if await m.repo.list_keys():
            return None
        _row, plaintext = await m.keys.create(name="first key")  # the same defaults as any other key
        return plaintext

    try:
        from .api.app import create_app
        from .engines.registry import ConfigError

        bound = sock.getsockname()[1]
        if bound != settings.port:  # --port 0
            settings = settings.model_copy(update={"port": bound})
        _check_database(settings)
        plaintext = _manage(settings, first_key)
        if plaintext:
            err.print("[bold]No API key existed, so one was created.[/bold] It is shown once; keep it:")
            print(plaintext, flush=True)
        try:
            application = create_app(settings)
        except ConfigError as exc:
            raise _fail(f"configuration error: {exc}", 2) from None
        run_server(application, settings, sock, on_ready=announce)
    except ServerStartError as exc:
        raise _fail(str(exc)) from None
    except (typer.Exit, KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:
        if ready:  # not a start-up failure: keep the traceback
            raise
        logging.getLogger("ideohub").debug("start-up failed", exc_info=True)
        raise _fail(f"could not start: {type(exc).__name__}: {one_line(exc)}") from None
    finally:
        sock.close()


@app.command()
def worker(
    operations: Annotated[str | None, typer.Option(
        "--operations", help="Operations this worker runs, comma-separated (e.g. upscale); default: every "
        "operation its configured engines serve")] = None,
    concurrency: Annotated[int | None, typer.Option("--concurrency", min=1, max=10_000,
                                                    help="Generations at once [env: IDEOHUB_WORKER_CONCURRENCY]")] = None,
    drain_seconds: Annotated[float, typer.Option("--drain-seconds", min=0,
                                                 help="On SIGTERM, how long running generations may finish "
                                                      "before they are handed back")] = 30.0,
    data_dir: DataDir = None,
    config: ConfigFile = None,
) -> None:
    """Run generations from the queue (needs queue_url). SIGTERM drains; a start-up failure exits
    non-zero with one line."""
    import asyncio
    import signal

    from .api.server import ServerStartError, one_line
    from .domain.operations import Operation
    from .logs import configure_logging
    from .worker import NothingToServe, Worker

    settings = _serve_settings(data_dir, config, worker_concurrency=concurrency)
    try:
        configure_logging(settings.log_level, secrets=[t for t in (settings.admin_token, settings.metrics_token,
                                                                   settings.secret_key, settings.s3_secret_access_key) if t])
    except ValueError as exc:
        raise _fail(f"configuration error: log_level: {exc}", 2) from None
    logging.getLogger("alembic").setLevel(logging.WARNING)
    ops: set[Operation] | None = None
    if operations:
        known = {op.value: op for op in Operation}
        unknown = [o for o in (x.strip() for x in operations.split(",")) if o and o not in known]
        if unknown:
            raise _fail(f"--operations: unknown operation {unknown[0]!r}; known: {', '.join(known)}", 2)
        ops = {known[o.strip()] for o in operations.split(",") if o.strip()}
    try:
        _check_database(settings)
        runner = Worker(settings, ops, drain_s=drain_seconds)
    except (ServerStartError, NothingToServe) as exc:
        raise _fail(str(exc)) from None

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)

        def ready(w: Worker) -> None:
            err.print(f"ideohub worker {w.id} serving {', '.join(op.value for op in w.served)}", soft_wrap=True)

        await runner.run(stop, ready)

    try:
        asyncio.run(main())
    except NothingToServe as exc:
        raise _fail(str(exc)) from None
    except (typer.Exit, KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:
        logging.getLogger("ideohub").debug("worker failed", exc_info=True)
        raise _fail(f"worker stopped: {type(exc).__name__}: {one_line(exc)}") from None


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="A label for the key")] = "",
    account: Annotated[str | None, typer.Option("--account", help="Account id (default: the unlimited default account)")] = None,
    rpm: Annotated[int | None, typer.Option("--rpm", min=1, max=2**31 - 1, help="Requests per minute "
                                            "(default: default_rpm)")] = None,
    max_images: Annotated[int | None, typer.Option("--max-images-in-flight", min=1, max=2**31 - 1,
                                                   help="Concurrent images (default: default_max_images_in_flight)")] = None,
    expires_in_days: Annotated[float | None, typer.Option("--expires-in-days", help="Expiry (days from now)")] = None,
    operations: Annotated[str | None, typer.Option("--operations", help="Allowed, comma-separated")] = None,
    spend_cap: Annotated[str | None, typer.Option("--spend-cap", help="Most this key may spend, USD")] = None,
    data_dir: DataDir = None,
    config: ConfigFile = None,
) -> None:
    """Create an API key; prints it alone on the last line (it is shown only once). The same
    rules and defaults as POST /admin/keys."""
    from .manage.keys import expiry_after_days

    settings = _settings(data_dir, config)
    row, plaintext = _manage(settings, lambda m: m.keys.create(
        account_id=account, name=name, rpm=rpm, max_images_in_flight=max_images,
        expires_at=expiry_after_days(expires_in_days), allowed_operations=operations, spend_cap_usd=spend_cap))
    err.print(f"created key {row.id} ({row.name or 'unnamed'}) for account {row.account_id}", markup=False,
              highlight=False)
    print(plaintext)


@accounts_app.command("create")
def accounts_create(
    name: str,
    group: Annotated[str, typer.Option("--group", help="Price group (a named multiplier)")] = "default",
    unlimited: Annotated[bool, typer.Option("--unlimited", help="Never refused for credit")] = False,
    data_dir: DataDir = None,
    config: ConfigFile = None,
) -> None:
    """Create a prepaid account; prints its id alone on the last line."""
    settings = _settings(data_dir, config)
    row = _manage(settings, lambda m: m.accounts.create(name, group, unlimited))
    err.print(f"created account {row.name}", markup=False, highlight=False)
    print(row.id)


@accounts_app.command("list")
def accounts_list(data_dir: DataDir = None, config: ConfigFile = None) -> None:
    """List accounts with their balances."""
    from .manage.accounts import account_view

    settings = _settings(data_dir, config)
    rows = _manage(settings, lambda m: m.accounts.list())
    table = Table("id", "name", "group", "balance (USD)", "credit")
    for a in map(account_view, rows):
        table.add_row(a["id"], a["name"], a["group"], a["balance_usd"], "unlimited" if a["unlimited"] else "prepaid")
    Console(width=160).print(table)


def _credit(kind: str, account_id: str, usd: str, note: str | None, data_dir: Path | None,
            config: Path | None) -> None:
    """Top-up or adjustment: the management layer's rule (``domain.money``: ``parse_usd`` then
    ``check_credit``), the same as POST /admin/accounts/{id}/topup and /adjust."""
    from .domain.prices import micros_to_usd

    settings = _settings(data_dir, config)

    async def move(m: Manager) -> int:
        if kind == "topup":
            return await m.accounts.topup(account_id, usd, note)
        return await m.accounts.adjust(account_id, usd, note)

    print(micros_to_usd(_manage(settings, move)))


@app.command()
def topup(account_id: str, usd: Annotated[str, typer.Argument(help="A positive amount of US dollars, e.g. 25 or 0.50")],
          note: Annotated[str | None, typer.Option("--note")] = None,
          data_dir: DataDir = None, config: ConfigFile = None) -> None:
    """Add credit to an account (USD, positive); prints the new balance.

    To correct a balance, use `ideohub adjust`."""
    _credit("topup", account_id, usd, note, data_dir, config)


@app.command()
def adjust(account_id: str,
           usd: Annotated[str, typer.Argument(help="US dollars, negative to debit (after `--`: adjust ACCT -- -1.5)")],
           note: Annotated[str, typer.Option("--note", help="Why (required; kept on the ledger row)")],
           data_dir: DataDir = None, config: ConfigFile = None) -> None:
    """Correct an account's balance either way, with a note saying why; prints the new balance."""
    _credit("adjust", account_id, usd, note, data_dir, config)


@app.command()
def balance(account_id: str, data_dir: DataDir = None, config: ConfigFile = None) -> None:
    """Print an account's balance in USD alone on the last line."""
    from .domain.prices import micros_to_usd

    settings = _settings(data_dir, config)
    account = _manage(settings, lambda m: m.accounts.get(account_id))
    print(micros_to_usd(account.balance_micros))


@app.command()
def usage(
    days: Annotated[int, typer.Option("--days", help="How far back, 1 to 3650")] = 30,
    data_dir: DataDir = None,
    config: ConfigFile = None,
) -> None:
    """Per-day, per-key and per-operation totals: requests, images, charged, upstream cost
    (the same figures as GET /admin/usage)."""
    from .domain.prices import micros_to_usd

    settings = _settings(data_dir, config)
    reports = _manage(settings, lambda m: m.usage(days))
    console = Console(width=160)
    for by, rows in reports.items():
        table = Table(by, "requests", "images", "charged (USD)", "upstream cost (USD)", "failed", "avg ms",
                      title=f"usage per {by}, last {days} days")
        for r in rows:
            table.add_row(str(r[by]), str(r["requests"]), str(r["images"]), micros_to_usd(r["charged_micros"]),
                          micros_to_usd(r["upstream_cost_micros"]), str(r["failed"]),
                          "" if r["avg_latency_ms"] is None else f"{r['avg_latency_ms']:.0f}")
        console.print(table)


@requests_app.command("list")
def requests_list(
    account: Annotated[str | None, typer.Option("--account", help="Account id")] = None,
    key: Annotated[str | None, typer.Option("--key", help="Key id")] = None,
    operation: Annotated[str | None, typer.Option("--operation", help="e.g. v3-generate")] = None,
    state: Annotated[str | None, typer.Option("--state", help="queued, running, done or failed")] = None,
    status: Annotated[str | None, typer.Option("--status", help="HTTP status code")] = None,
    channel: Annotated[str | None, typer.Option("--channel", help="Upstream channel")] = None,
    since: Annotated[str | None, typer.Option("--since", help="ISO 8601 date-time")] = None,
    until: Annotated[str | None, typer.Option("--until", help="ISO 8601 date-time")] = None,
    limit: Annotated[str, typer.Option("--limit", help="At most this many, 1 to 200")] = "50",
    before: Annotated[str | None, typer.Option("--before", help="The next page's cursor, printed after a full page")] = None,
    data_dir: DataDir = None,
    config: ConfigFile = None,
) -> None:
    """Requests, newest first, with the same filters as GET /admin/requests."""
    from .manage.requests import parse_filters

    query = {"account_id": account, "key_id": key, "operation": operation, "state": state, "status_code": status,
             "channel": channel, "since": since, "until": until, "limit": limit, "before": before}
    settings = _settings(data_dir, config)
    page = _manage(settings, lambda m: m.requests.page(parse_filters(query)))
    table = Table("id", "created (UTC)", "account", "key", "operation", "state", "status", "channel", "images",
                  "charge (USD)", "ms")
    for r in page["items"]:
        table.add_row(r["id"], r["created_at"].strftime("%Y-%m-%d %H:%M:%S"), r["account_id"], r["key_id"] or "-",
                      r["operation"], r["state"], str(r["status_code"] or "-"), r["channel"] or "-", str(r["images"]),
                      r["price_usd"], "-" if r["latency_ms"] is None else f"{r['latency_ms']:.0f}")
    Console(width=200).print(table)
    if page["next_before"]:
        err.print(f"more: --before {page['next_before']}", markup=False, highlight=False)


@requests_app.command("show")
def requests_show(request_id: str, data_dir: DataDir = None, config: ConfigFile = None) -> None:
    """One request as JSON: parameters (prompts only with log_prompts), timings, upstream attempts,
    charge and images (GET /admin/requests/{id}, without links: the CLI signs none)."""
    import json

    settings = _settings(data_dir, config)
    detail = _manage(settings, lambda m: m.requests.detail(request_id))
    print(json.dumps(detail, indent=2, default=lambda v: v.isoformat() if hasattr(v, "isoformat") else str(v)))


@app.command()
def prices(data_dir: DataDir = None, config: ConfigFile = None) -> None:
    """The effective price table: list prices and the configuration's overrides, per price group
    (GET /admin/prices). Prices come from the configuration."""
    settings = _settings(data_dir, config)

    async def price_view(m: Manager) -> dict:
        return m.prices()

    view = _manage(settings, price_view)
    groups = list(view["groups"])
    table = Table("operation", "tier", "character ref.", "upscale", "USD per image", *(f"group {g}" for g in groups),
                  "source", title="prices (groups: " + ", ".join(f"{g} ×{m:g}" for g, m in view["groups"].items()) + ")")
    for r in view["rows"]:
        table.add_row(r["operation"], r["tier"], "yes" if r["character_reference"] else "", r["upscale_factor"],
                      r["usd"], *(r["by_group"][g] for g in groups), r["source"])
    Console(width=200).print(table)


@app.command()
def stats(
    hours: Annotated[str, typer.Option("--hours", help="How far back, 1 to 8760")] = "168",
    bucket: Annotated[str | None, typer.Option("--bucket", help="hour or day (default: hour up to 72 hours)")] = None,
    operation: Annotated[str | None, typer.Option("--operation", help="Only this operation")] = None,
    channel: Annotated[str | None, typer.Option("--channel", help="Only what this channel served")] = None,
    data_dir: DataDir = None,
    config: ConfigFile = None,
) -> None:
    """The dashboard's figures: requests, images, revenue, upstream cost and errors per hour or
    day, per operation and per channel (GET /admin/stats); empty periods are left out."""
    settings = _settings(data_dir, config)
    s = _manage(settings, lambda m: m.stats(hours, bucket, operation, channel))
    scope = ", ".join(f"{k} {s[k]}" for k in ("operation", "channel") if s[k])
    console = Console(width=160)
    table = Table(s["bucket"] + " (UTC)", "requests", "images", "revenue (USD)", "upstream cost (USD)", "errors",
                  "error rate", title=f"last {s['hours']} hours" + (f": {scope}" if scope else ""))
    for b in s["buckets"]:
        if b["requests"] or b["upstream_cost_usd"] != "0":
            table.add_row(b["start"].strftime("%Y-%m-%d %H:%M"), str(b["requests"]), str(b["images"]),
                          b["revenue_usd"], b["upstream_cost_usd"], str(b["errors"]), f"{b['error_rate']:.1%}")
    console.print(table)
    table = Table("operation", "requests", "images", "revenue (USD)", "upstream cost (USD)", "errors")
    for o in s["by_operation"]:
        table.add_row(o["operation"], str(o["requests"]), str(o["images"]), o["revenue_usd"], o["upstream_cost_usd"],
                      str(o["errors"]))
    console.print(table)
    table = Table("channel", "attempts", "errors", "upstream cost (USD)", "latency p50 (ms)")
    for c in s["by_channel"]:
        table.add_row(c["channel"], str(c["attempts"]), str(c["errors"]), c["upstream_cost_usd"],
                      "-" if c["latency_ms_p50"] is None else f"{c['latency_ms_p50']:.0f}")
    console.print(table)


@keys_app.command("list")
def keys_list(data_dir: DataDir = None, config: ConfigFile = None) -> None:
    """List keys with every limit and their status (never the secrets).

    "-" is no limit; "spent" counts settled spend and open reservations against the cap."""
    from datetime import UTC, datetime

    from .manage.keys import key_view

    settings = _settings(data_dir, config)
    rows = _manage(settings, lambda m: m.keys.list())
    now = datetime.now(UTC)

    def when(t: datetime | None) -> str:
        return "-" if t is None else t.isoformat(timespec="minutes")

    table = Table("id", "name", "prefix", "account", "rpm", "images in flight", "spend cap (USD)", "spent (USD)",
                  "expires", "operations", "created", "status")
    for k in (key_view(r, now) for r in rows):
        ops = k["allowed_operations"]
        table.add_row(k["id"], k["name"], k["prefix"] + "…", k["account_id"] or "", str(k["rpm"] or "-"),
                      str(k["max_images_in_flight"] or "-"), k["spend_cap_usd"] or "-", k["spent_usd"],
                      when(k["expires_at"]), "all" if ops is None else ",".join(ops) or "none",
                      when(k["created_at"]), k["status"])
    Console(width=260).print(table)


@keys_app.command("edit")
def keys_edit(
    key_id: str,
    name: Annotated[str | None, typer.Option("--name", help="A new label")] = None,
    rpm: Annotated[int | None, typer.Option("--rpm", min=1, max=2**31 - 1, help="Requests per minute")] = None,
    max_images: Annotated[int | None, typer.Option("--max-images-in-flight", min=1, max=2**31 - 1,
                                                   help="Concurrent images")] = None,
    expires_in_days: Annotated[float | None, typer.Option("--expires-in-days", help="Expiry (days from now)")] = None,
    operations: Annotated[str | None, typer.Option("--operations", help="Allowed, comma-separated")] = None,
    spend_cap: Annotated[str | None, typer.Option("--spend-cap", help="Most this key may spend, USD")] = None,
    clear: Annotated[list[str] | None, typer.Option(
        "--clear", help="Remove a limit: rpm, max-images-in-flight, expires, operations or spend-cap (repeatable)")] = None,
    data_dir: DataDir = None,
    config: ConfigFile = None,
) -> None:
    """Change a key's label or limits; options left out stay as they are. The same rules as
    PATCH /admin/keys/{id}."""
    from .manage.keys import expiry_after_days

    clearable = {"rpm": "rpm", "max-images-in-flight": "max_images_in_flight", "expires": "expires_at",
                 "operations": "allowed_operations", "spend-cap": "spend_cap_usd"}
    changes: dict[str, object] = {}
    for item in clear or []:
        if item not in clearable:
            err.print(f"--clear: unknown limit {item!r}; one of {', '.join(clearable)}", markup=False, style="red")
            raise typer.Exit(2)
        changes[clearable[item]] = None
    given = {"name": name, "rpm": rpm, "max_images_in_flight": max_images, "allowed_operations": operations,
             "spend_cap_usd": spend_cap}
    changes.update({k: v for k, v in given.items() if v is not None})
    settings = _settings(data_dir, config)
    expiry = {} if expires_in_days is None else {"expires_at": expires_in_days}
    row = _manage(settings, lambda m: m.keys.update(key_id, {
        **changes, **{k: expiry_after_days(v) for k, v in expiry.items()}}))
    err.print(f"key {row.id} updated", markup=False, highlight=False)


@keys_app.command("revoke")
def keys_revoke(key_id: str, data_dir: DataDir = None, config: ConfigFile = None) -> None:
    """Revoke a key by id; it stops working at once, on running servers too."""
    settings = _settings(data_dir, config)
    _manage(settings, lambda m: m.keys.revoke(key_id))
    err.print(f"revoked {key_id}", markup=False, highlight=False)


@channels_app.command("add")
def channels_add(
    name: str,
    kind: Annotated[str | None, typer.Option("--kind", help="ideogram (the official API) or relay (default)")] = None,
    base_url: Annotated[str | None, typer.Option("--base-url", help="Required for relay")] = None,
    key: Annotated[str, typer.Option("--key", help="The upstream's API key (stored encrypted)", prompt=True,
                                     hide_input=True)] = "",
    auth: Annotated[str | None, typer.Option("--auth", help="bearer or api-key (relay only)")] = None,
    path_style: Annotated[str | None, typer.Option("--path-style", help="official, ideogram or ideogram-v1")] = None,
    priority: Annotated[int | None, typer.Option("--priority", help="Higher tiers are tried first")] = None,
    weight: Annotated[int | None, typer.Option("--weight", help="Weighted random within a tier")] = None,
    max_in_flight: Annotated[int | None, typer.Option("--max-in-flight", help="Concurrent requests to it")] = None,
    operations: Annotated[str | None, typer.Option(
        "--operations", help="Comma-separated operations or families (legacy, 3.0, 4.0, v2), e.g. "
                             "legacy,3.0,4.0,v2-generate-ideogram-4 (relay default: legacy,3.0; ideogram default: "
                             "all; resold models such as v2-generate-nano-banana-2 only if listed by name)",
    )] = None,
    models: Annotated[str | None, typer.Option("--models", help="Models/speeds, e.g. V_2,TURBO")] = None,
    timeout: Annotated[float | None, typer.Option("--timeout", help="Seconds per upstream request")] = None,
    connect_timeout: Annotated[float | None, typer.Option("--connect-timeout", help="Seconds to connect")] = None,
    cost: Annotated[float | None, typer.Option("--cost-multiplier", help="Its price to us vs list prices")] = None,
    account_fields: Annotated[bool | None, typer.Option(
        "--account-fields/--no-account-fields",
        help="Forward fields that act on your own upstream account (target_collection_id, custom_model_uri, "
             "magic_prompt_system_prompt_config_id); off by default")] = None,
    data_dir: DataDir = None,
    config: ConfigFile = None,
) -> None:
    """Add (or replace) an upstream channel. Options left out take the channel-defaults table's
    values for the kind, exactly as a channel in the config file does (`ideohub channels defaults`
    prints the table)."""
    from .engines.relay.channels import mask_url

    settings = _settings(data_dir, config)
    options: dict[str, object | None] = dict(
        name=name, kind=kind, base_url=base_url or None, key=key, auth=auth, path_style=path_style, priority=priority,
        weight=weight, max_in_flight=max_in_flight, operations=operations, models=models, timeout_s=timeout,
        connect_timeout_s=connect_timeout, cost_multiplier=cost, account_fields=account_fields,
    )
    channel = _manage(settings, lambda m: m.channels().add(options, replace=True), prefix="invalid channel: ")
    auth, paths = channel.auth.value, channel.path_style.value  # type: ignore[union-attr]
    err.print(f"channel {name} saved ({channel.kind.value}, {mask_url(str(channel.base_url))}, {auth} auth, "
              f"{paths} paths)", markup=False, highlight=False)


@channels_app.command("edit")
def channels_edit(
    name: str,
    kind: Annotated[str | None, typer.Option("--kind", help="ideogram or relay")] = None,
    base_url: Annotated[str | None, typer.Option("--base-url")] = None,
    key: Annotated[str | None, typer.Option("--key", help="A new upstream key (left out: the stored one stays)")] = None,
    auth: Annotated[str | None, typer.Option("--auth", help="bearer or api-key (relay only)")] = None,
    path_style: Annotated[str | None, typer.Option("--path-style", help="official, ideogram or ideogram-v1")] = None,
    priority: Annotated[int | None, typer.Option("--priority")] = None,
    weight: Annotated[int | None, typer.Option("--weight")] = None,
    max_in_flight: Annotated[int | None, typer.Option("--max-in-flight")] = None,
    operations: Annotated[str | None, typer.Option("--operations", help="Comma-separated operations or families")] = None,
    models: Annotated[str | None, typer.Option("--models")] = None,
    timeout: Annotated[float | None, typer.Option("--timeout")] = None,
    connect_timeout: Annotated[float | None, typer.Option("--connect-timeout")] = None,
    cost: Annotated[float | None, typer.Option("--cost-multiplier")] = None,
    account_fields: Annotated[bool | None, typer.Option("--account-fields/--no-account-fields")] = None,
    data_dir: DataDir = None,
    config: ConfigFile = None,
) -> None:
    """Change some of a channel's options; the rest (and the stored key) stay. The same rules as
    PATCH /admin/channels/{name}."""
    options = dict(kind=kind, base_url=base_url, key=key, auth=auth, path_style=path_style, priority=priority,
                   weight=weight, max_in_flight=max_in_flight, operations=operations, models=models, timeout_s=timeout,
                   connect_timeout_s=connect_timeout, cost_multiplier=cost, account_fields=account_fields)
    changes = {k: v for k, v in options.items() if v is not None}
    settings = _settings(data_dir, config)
    _manage(settings, lambda m: m.channels().update(name, changes), prefix="invalid channel: ")
    err.print(f"channel {name} updated", markup=False, highlight=False)


@channels_app.command("defaults")
def channels_defaults() -> None:
    """Print the channel-defaults table (used by `channels add` and by channels in the config file)."""
    from .engines.relay.channels import COMMON_DEFAULTS, KIND_DEFAULTS

    table = Table("kind", "option", "default")
    for kind, values in KIND_DEFAULTS.items():
        for option, value in {**values, **({} if "base_url" in values else {"base_url": "(required)"})}.items():
            table.add_row(kind.value, option, str(getattr(value, "value", value)))
    for option, value in COMMON_DEFAULTS.items():
        table.add_row("any", option, str(value))
    Console(width=120).print(table)


@channels_app.command("list")
def channels_list(data_dir: DataDir = None, config: ConfigFile = None) -> None:
    """List channels with their health (never their keys; base-URL credentials masked)."""
    from datetime import UTC, datetime

    from rich.text import Text

    from .engines.relay.channels import ChannelHealth, describe_operations

    settings = _settings(data_dir, config)
    channels = _manage(settings, lambda m: m.channels().list())
    now = datetime.now(UTC)
    table = Table("name", "kind", "base url", "auth", "paths", "priority", "weight", "max in flight", "operations",
                  "health")
    for c in channels:
        p = c.public()
        health = (c.health or ChannelHealth()).describe(c.enabled, now)  # may quote an upstream: no markup
        table.add_row(c.name, p["kind"], Text(str(p["base_url"])), p["auth"], p["path_style"], str(c.priority),
                      str(c.weight), str(c.max_in_flight),
                      describe_operations(c.operations),
                      Text(health))
    Console(width=220).print(table)


def _set_enabled(name: str, enabled: bool, data_dir: Path | None, config: Path | None) -> None:
    settings = _settings(data_dir, config)
    _manage(settings, lambda m: m.channels().set_enabled(name, enabled))
    err.print(f"channel {name} {'enabled' if enabled else 'disabled'}", markup=False, highlight=False)


@channels_app.command("disable")
def channels_disable(name: str, data_dir: DataDir = None, config: ConfigFile = None) -> None:
    """Stop routing to a channel."""
    _set_enabled(name, False, data_dir, config)


@channels_app.command("enable")
def channels_enable(name: str, data_dir: DataDir = None, config: ConfigFile = None) -> None:
    """Route to a channel again."""
    _set_enabled(name, True, data_dir, config)


@channels_app.command("remove")
def channels_remove(name: str, data_dir: DataDir = None, config: ConfigFile = None) -> None:
    """Delete a channel."""
    settings = _settings(data_dir, config)
    _manage(settings, lambda m: m.channels().remove(name))
    err.print(f"channel {name} removed", markup=False, highlight=False)


@channels_app.command("test")
def channels_test(name: str, data_dir: DataDir = None, config: ConfigFile = None) -> None:
    """Check reachability and the key at no cost: an empty V3 generate request must be
    refused for its missing prompt (400), not for the key (401/403). The same probe as
    POST /admin/channels/{name}/test."""
    settings = _settings(data_dir, config)
    result = _manage(settings, lambda m: m.channels().test(name))
    if result.ok:
        print(f"{name}: ok ({result.detail})")
        return
    err.print(f"{name}: {result.detail}", markup=False, highlight=False, soft_wrap=True, style="red")
    raise typer.Exit(1)


@db_app.command("upgrade")
def db_upgrade(data_dir: DataDir = None, config: ConfigFile = None) -> None:
    """Apply database migrations (SQLite or PostgreSQL) and say what was done.

    PostgreSQL is migrated only by this command; SQLite in the data directory also
    migrates itself."""
    settings = _settings(data_dir, config)
    try:
        report = db.upgrade(settings.db_url)
    except db.DatabaseError as exc:
        err.print(f"error: {exc}", soft_wrap=True, markup=False, highlight=False)
        raise typer.Exit(1) from None
    err.print(str(report), soft_wrap=True, markup=False, highlight=False)


@app.command()
def sweep(data_dir: DataDir = None, config: ConfigFile = None) -> None:
    """Run the sweeper once (`serve` runs it periodically).

    Deletes expired images, releases reservations abandoned by a crashed process and drops
    usage past its retention."""
    from .media.storage import make_storage
    from .service import Service
    from .store.ledger import Ledger

    settings = _settings(data_dir, config)

    async def go(repo: Repository) -> tuple[int, int]:
        storage = make_storage(settings)  # the object store too: expiry deletes objects
        try:
            service = Service(settings, repo, storage, None, {}, None,  # type: ignore[arg-type]
                              ledger=Ledger(repo.session))
            deleted = await service.sweep()
        finally:
            await storage.aclose()
        return service.last_released, deleted

    released, deleted = _with_repo(settings, go)
    print(f"released {released} reservations, deleted {deleted} expired images")


@app.command("rotate-signing-key")
def rotate_signing_key(data_dir: DataDir = None, config: ConfigFile = None) -> None:
    """Add a URL-signing key and make it the newest; prints its id.

    Running servers sign with it within a few seconds, without a restart (unless
    signing_key_id pins a key); links signed with older keys keep working."""
    settings = _settings(data_dir, config)
    kid = _with_db(settings, lambda _repo, secrets: secrets.rotate_signing_key())
    if settings.signing_key_id:
        err.print(f"note: signing_key_id = {settings.signing_key_id!r} is set, so servers keep signing with that key",
                  markup=False, highlight=False, soft_wrap=True)
    print(kid)


@app.command("rotate-webhook-key")
def rotate_webhook_key(data_dir: DataDir = None, config: ConfigFile = None) -> None:
    """Add a webhook-signing key (Ed25519) and sign with it from now on; prints its id.

    Running servers sign with it within a few seconds, without a restart. The previous key is
    retired but stays published at /v1/.well-known/jwks.json for 7 days."""
    settings = _settings(data_dir, config)
    print(_with_db(settings, lambda _repo, secrets: secrets.rotate_webhook_key()))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
