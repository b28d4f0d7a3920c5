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
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from .config import Secrets, Settings, load_settings
from .store import db
from .store.repository import Repository

T = TypeVar("T")

app = typer.Typer(help="ideohub: the Ideogram image API, self-hosted.", no_args_is_help=True, add_completion=False)
keys_app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)
db_app = typer.Typer(help="Database migrations.", no_args_is_help=True)
channels_app = typer.Typer(help="Upstream channels for the relay engine (take effect on running servers within a second).",
                           no_args_is_help=True)
accounts_app = typer.Typer(help="Prepaid accounts.", no_args_is_help=True)
app.add_typer(accounts_app, name="accounts")
app.add_typer(keys_app, name="keys")
app.add_typer(channels_app, name="channels")
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


def _with_repo(settings: Settings, fn: Callable[[Repository], Awaitable[T]]) -> T:
    if settings.db_url.startswith("sqlite"):
        db.upgrade(settings.db_url)
    secrets = Secrets.load(settings)

    async def go() -> T:
        repo = Repository.connect(settings.db_url, secrets.key_pepper)
        try:
            return await fn(repo)
        finally:
            await repo.close()

    return asyncio.run(go())


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address [env: IDEOHUB_HOST]")] = None,
    port: Annotated[int | None, typer.Option(help="Port [env: IDEOHUB_PORT]")] = None,
    data_dir: DataDir = None,
    config: ConfigFile = None,
) -> None:
    """Run the API server (SQLite and local disk by default)."""
    import uvicorn

    from .api.app import create_app
    from .engines.registry import ConfigError

    settings = _settings(data_dir, config, host=host, port=port)
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")

    async def first_key(repo: Repository) -> str | None:
        if await repo.list_keys():
            return None
        _row, plaintext = await repo.create_key("first key")
        return plaintext

    plaintext = _with_repo(settings, first_key)
    if plaintext:
        err.print("[bold]No API key existed, so one was created.[/bold] It is shown once; keep it:")
        print(plaintext, flush=True)
    try:
        application = create_app(settings)
    except ConfigError as exc:
        err.print(f"[red]configuration error:[/red] {exc}")
        raise typer.Exit(2) from None
    err.print(f"ideohub listening on http://{settings.host}:{settings.port} (public URL {settings.base_url})")
    uvicorn.run(application, host=settings.host, port=settings.port, log_level="warning", access_log=False)


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="A label for the key")] = "",
    account: Annotated[str | None, typer.Option("--account", help="Account id (default: the unlimited default account)")] = None,
    rpm: Annotated[int | None, typer.Option("--rpm", min=1, max=2**31 - 1, help="Requests per minute")] = None,
    max_images: Annotated[int | None, typer.Option("--max-images-in-flight", min=1, max=2**31 - 1,
                                                   help="Concurrent images")] = None,
    expires_in_days: Annotated[float | None, typer.Option("--expires-in-days", help="Expiry (days from now)")] = None,
    operations: Annotated[str | None, typer.Option("--operations", help="Allowed, comma-separated")] = None,
    spend_cap: Annotated[str | None, typer.Option("--spend-cap", help="Most this key may spend, USD")] = None,
    data_dir: DataDir = None,
    config: ConfigFile = None,
) -> None:
    """Create an API key; prints it alone on the last line (it is shown only once)."""
    from datetime import UTC, datetime, timedelta

    from .domain.operations import Operation
    from .store.ledger import DEFAULT_ACCOUNT, Ledger

    settings = _settings(data_dir, config)
    allowed = [o.strip() for o in operations.split(",") if o.strip()] if operations else None
    for op in allowed or []:
        if op not in Operation._value2member_map_:
            err.print(f"[red]unknown operation {op!r}[/red]; known: {', '.join(o.value for o in Operation)}")
            raise typer.Exit(2)

    cap = _usd(spend_cap) if spend_cap is not None else None
    if cap is not None and cap < 0:
        err.print("[red]--spend-cap must not be negative[/red]")
        raise typer.Exit(2)

    async def go(repo: Repository):  # type: ignore[no-untyped-def]
        account_id = account or DEFAULT_ACCOUNT
        if await Ledger(repo.session).get_account(account_id) is None:
            err.print(f"[red]no account {account_id}[/red]")
            raise typer.Exit(1)
        return await repo.create_key(
            name, account_id=account_id,
            rpm=rpm if rpm is not None else settings.default_rpm,
            max_images_in_flight=max_images if max_images is not None else settings.default_max_images_in_flight,
            expires_at=datetime.now(UTC) + timedelta(days=expires_in_days) if expires_in_days is not None else None,
            allowed_operations=allowed, spend_cap_micros=cap,
        )

    row, plaintext = _with_repo(settings, go)
    err.print(f"created key {row.id} ({row.name or 'unnamed'}) for account {row.account_id}")
    print(plaintext)


def _usd(text: str) -> int:
    from .api.admin import parse_usd
    from .domain.errors import InvalidRequest

    try:
        return parse_usd(text, "USD")
    except InvalidRequest as exc:
        err.print(f"[red]{exc.detail}[/red]")
        raise typer.Exit(2) from None


@accounts_app.command("create")
def accounts_create(
    name: str,
    group: Annotated[str, typer.Option("--group", help="Price group (a named multiplier)")] = "default",
    unlimited: Annotated[bool, typer.Option("--unlimited", help="Never refused for credit")] = False,
    data_dir: DataDir = None,
    config: ConfigFile = None,
) -> None:
    """Create a prepaid account; prints its id alone on the last line."""
    from .store.ledger import Ledger

    settings = _settings(data_dir, config)
    if group != "default" and group not in settings.groups:
        err.print(f"[red]unknown group {group!r}[/red]; configure it under [groups]")
        raise typer.Exit(2)
    row = _with_repo(settings, lambda repo: Ledger(repo.session).create_account(name, group, unlimited))
    err.print(f"created account {row.name}")
    print(row.id)


@accounts_app.command("list")
def accounts_list(data_dir: DataDir = None, config: ConfigFile = None) -> None:
    """List accounts with their balances."""
    from .domain.prices import micros_to_usd
    from .store.ledger import Ledger

    settings = _settings(data_dir, config)
    rows = _with_repo(settings, lambda repo: Ledger(repo.session).list_accounts())
    table = Table("id", "name", "group", "balance (USD)", "credit")
    for a in rows:
        table.add_row(a.id, a.name, a.group_name, micros_to_usd(a.balance_micros), "unlimited" if a.unlimited else "prepaid")
    Console(width=160).print(table)


@app.command()
def topup(account_id: str, usd: str, note: Annotated[str | None, typer.Option("--note")] = None,
          data_dir: DataDir = None, config: ConfigFile = None) -> None:
    """Add credit to an account (USD); prints the new balance."""
    from .domain.errors import NotFound
    from .domain.prices import micros_to_usd
    from .store.ledger import Ledger

    settings = _settings(data_dir, config)
    micros = _usd(usd)
    try:
        balance = _with_repo(settings, lambda repo: Ledger(repo.session).topup(account_id, micros, note))
    except NotFound as exc:
        err.print(f"[red]{exc.detail}[/red]")
        raise typer.Exit(1) from None
    print(micros_to_usd(balance))


@app.command()
def balance(account_id: str, data_dir: DataDir = None, config: ConfigFile = None) -> None:
    """Print an account's balance in USD alone on the last line."""
    from .domain.prices import micros_to_usd
    from .store.ledger import Ledger

    settings = _settings(data_dir, config)
    account = _with_repo(settings, lambda repo: Ledger(repo.session).get_account(account_id))
    if account is None:
        err.print(f"[red]no account {account_id}[/red]")
        raise typer.Exit(1)
    print(micros_to_usd(account.balance_micros))


@app.command()
def usage(
    days: Annotated[int, typer.Option("--days", min=1, help="How far back")] = 30,
    data_dir: DataDir = None,
    config: ConfigFile = None,
) -> None:
    """Per-day, per-key and per-operation totals: requests, images, charged, upstream cost."""
    from datetime import UTC, datetime, timedelta

    from .domain.prices import micros_to_usd
    from .store.usage import GROUPINGS, usage_report

    settings = _settings(data_dir, config)
    since = datetime.now(UTC) - timedelta(days=days)

    async def go(repo: Repository):  # type: ignore[no-untyped-def]
        return {by: await usage_report(repo.session, since, by) for by in GROUPINGS}

    reports = _with_repo(settings, go)
    console = Console(width=160)
    for by, rows in reports.items():
        table = Table(by, "requests", "images", "charged (USD)", "upstream cost (USD)", "failed", "avg ms",
                      title=f"usage per {by}, last {days} days")
        for r in rows:
            table.add_row(str(r[by]), str(r["requests"]), str(r["images"]), micros_to_usd(r["charged_micros"]),
                          micros_to_usd(r["upstream_cost_micros"]), str(r["failed"]),
                          "" if r["avg_latency_ms"] is None else f"{r['avg_latency_ms']:.0f}")
        console.print(table)


@keys_app.command("list")
def keys_list(data_dir: DataDir = None, config: ConfigFile = None) -> None:
    """List keys (ids and prefixes, never the secrets)."""
    settings = _settings(data_dir, config)
    rows = _with_repo(settings, lambda repo: repo.list_keys())
    table = Table("id", "name", "prefix", "account", "rpm", "images", "created", "status")
    for r in rows:
        table.add_row(r.id, r.name, r.prefix + "…", r.account_id or "", str(r.rpm or "-"),
                      str(r.max_images_in_flight or "-"), r.created_at.isoformat(timespec="seconds"),
                      "revoked" if r.revoked_at else "active")
    Console(width=180).print(table)


@keys_app.command("revoke")
def keys_revoke(key_id: str, data_dir: DataDir = None, config: ConfigFile = None) -> None:
    """Revoke a key by id; it stops working at once, on running servers too."""
    settings = _settings(data_dir, config)
    if not _with_repo(settings, lambda repo: repo.revoke_key(key_id)):
        err.print(f"[red]no active key with id {key_id}[/red]")
        raise typer.Exit(1)
    err.print(f"revoked {key_id}")


def _channel_store(repo: Repository, settings: Settings):  # type: ignore[no-untyped-def]
    from .engines.relay.channel_store import ChannelStore
    from .engines.relay.channels import SecretBox

    return ChannelStore(repo.session, SecretBox(Secrets.load(settings).channel_key))


@channels_app.command("add")
def channels_add(
    name: str,
    kind: Annotated[str, typer.Option("--kind", help="ideogram (the official API) or relay")] = "relay",
    base_url: Annotated[str | None, typer.Option("--base-url", help="Default for ideogram: https://api.ideogram.ai")] = None,
    key: Annotated[str, typer.Option("--key", help="The upstream's API key (stored encrypted)", prompt=True,
                                     hide_input=True)] = "",
    auth: Annotated[str, typer.Option("--auth", help="bearer or api-key (relay only)")] = "bearer",
    path_style: Annotated[str, typer.Option("--path-style", help="official, ideogram or ideogram-v1")] = "ideogram",
    priority: Annotated[int, typer.Option("--priority", help="Higher tiers are tried first")] = 0,
    weight: Annotated[int, typer.Option("--weight", help="Weighted random within a tier")] = 1,
    max_in_flight: Annotated[int, typer.Option("--max-in-flight", help="Concurrent requests to this upstream")] = 10,
    operations: Annotated[str | None, typer.Option("--operations", help="Comma-separated, e.g. upscale,v3-generate")] = None,
    models: Annotated[str | None, typer.Option("--models", help="Comma-separated models/speeds, e.g. V_2,TURBO")] = None,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds per upstream request")] = 180.0,
    cost: Annotated[float, typer.Option("--cost-multiplier", help="Its price to us relative to the list prices")] = 1.0,
    data_dir: DataDir = None,
    config: ConfigFile = None,
) -> None:
    """Add (or replace) an upstream channel."""
    from .engines.relay.channels import channel_from_options

    settings = _settings(data_dir, config)
    options: dict[str, object] = dict(name=name, kind=kind, key=key, auth=auth, path_style=path_style,
                                      priority=priority, weight=weight, max_in_flight=max_in_flight,
                                      operations=operations, models=models, timeout_s=timeout, cost_multiplier=cost)
    if base_url:
        options["base_url"] = base_url
    try:
        channel = channel_from_options({k: v for k, v in options.items() if v is not None})
    except (ValueError, TypeError) as exc:
        err.print(f"[red]invalid channel:[/red] {exc}")
        raise typer.Exit(2) from None
    _with_repo(settings, lambda repo: _channel_store(repo, settings).upsert(channel))
    err.print(f"channel {name} saved ({channel.kind.value}, {channel.base_url})")


@channels_app.command("list")
def channels_list(data_dir: DataDir = None, config: ConfigFile = None) -> None:
    """List channels (never their keys)."""
    settings = _settings(data_dir, config)
    channels = _with_repo(settings, lambda repo: _channel_store(repo, settings).list())
    table = Table("name", "kind", "base url", "auth", "paths", "priority", "weight", "max in flight", "operations",
                  "enabled")
    for c in channels:
        p = c.public()
        table.add_row(c.name, p["kind"], p["base_url"], p["auth"], p["path_style"], str(c.priority), str(c.weight),
                      str(c.max_in_flight), ",".join(p["operations"]) if p["operations"] else "all",  # type: ignore[arg-type]
                      "yes" if c.enabled else "no")
    Console(width=200).print(table)


def _set_enabled(name: str, enabled: bool, data_dir: Path | None, config: Path | None) -> None:
    settings = _settings(data_dir, config)
    if not _with_repo(settings, lambda repo: _channel_store(repo, settings).set_enabled(name, enabled)):
        err.print(f"[red]no channel named {name}[/red]")
        raise typer.Exit(1)
    err.print(f"channel {name} {'enabled' if enabled else 'disabled'}")


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
    if not _with_repo(settings, lambda repo: _channel_store(repo, settings).remove(name)):
        err.print(f"[red]no channel named {name}[/red]")
        raise typer.Exit(1)
    err.print(f"channel {name} removed")


@channels_app.command("test")
def channels_test(name: str, data_dir: DataDir = None, config: ConfigFile = None) -> None:
    """Check reachability and the key at no cost: an empty V3 generate request must be
    refused for its missing prompt (400), not for the key (401/403)."""
    import httpx

    from .domain.operations import Operation

    settings = _settings(data_dir, config)
    channel = _with_repo(settings, lambda repo: _channel_store(repo, settings).get(name))
    if channel is None:
        err.print(f"[red]no channel named {name}[/red]")
        raise typer.Exit(1)
    url = channel.url_for(Operation.V3_GENERATE)
    try:
        r = httpx.post(url, json={}, headers=channel.auth_headers(), timeout=min(channel.timeout_s, 30))
    except httpx.HTTPError as exc:
        err.print(f"[red]{name}: unreachable ({exc.__class__.__name__})[/red]")
        raise typer.Exit(1) from None
    if r.status_code in (400, 422):
        print(f"{name}: ok (reachable, key accepted; HTTP {r.status_code} for the empty probe)")
    elif r.status_code in (401, 403):
        err.print(f"[red]{name}: the upstream rejected the key (HTTP {r.status_code})[/red]")
        raise typer.Exit(1)
    else:
        err.print(f"[red]{name}: unexpected HTTP {r.status_code} from {url}[/red]")
        raise typer.Exit(1)


@db_app.command("upgrade")
def db_upgrade(data_dir: DataDir = None, config: ConfigFile = None) -> None:
    """Apply database migrations (SQLite or PostgreSQL)."""
    settings = _settings(data_dir, config)
    db.upgrade(settings.db_url)
    err.print("database is at the latest revision")


@app.command()
def sweep(data_dir: DataDir = None, config: ConfigFile = None) -> None:
    """Run the sweeper once: delete expired images, release reservations abandoned by a
    crashed process, drop usage past its retention. (``serve`` runs it periodically.)"""
    from .media.storage import LocalStorage
    from .service import Service
    from .store.ledger import Ledger

    settings = _settings(data_dir, config)

    async def go(repo: Repository) -> tuple[int, int]:
        service = Service(settings, repo, LocalStorage(settings.images_dir), None, {}, None,  # type: ignore[arg-type]
                          ledger=Ledger(repo.session))
        deleted = await service.sweep()
        return service.last_released, deleted

    released, deleted = _with_repo(settings, go)
    print(f"released {released} reservations, deleted {deleted} expired images")


@app.command("rotate-signing-key")
def rotate_signing_key(data_dir: DataDir = None, config: ConfigFile = None) -> None:
    """Add a new URL-signing key; links signed with older keys keep working."""
    settings = _settings(data_dir, config)
    print(Secrets.rotate(settings))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
