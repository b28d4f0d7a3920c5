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
    data_dir: DataDir = None,
    config: ConfigFile = None,
) -> None:
    """Create an API key; prints it alone on the last line (it is shown only once)."""
    settings = _settings(data_dir, config)
    row, plaintext = _with_repo(settings, lambda repo: repo.create_key(name))
    err.print(f"created key {row.id} ({row.name or 'unnamed'})")
    print(plaintext)


@keys_app.command("list")
def keys_list(data_dir: DataDir = None, config: ConfigFile = None) -> None:
    """List keys (ids and prefixes, never the secrets)."""
    settings = _settings(data_dir, config)
    rows = _with_repo(settings, lambda repo: repo.list_keys())
    table = Table("id", "name", "prefix", "created", "status")
    for r in rows:
        table.add_row(r.id, r.name, r.prefix + "…", r.created_at.isoformat(timespec="seconds"),
                      "revoked" if r.revoked_at else "active")
    Console().print(table)


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


@app.command("rotate-signing-key")
def rotate_signing_key(data_dir: DataDir = None, config: ConfigFile = None) -> None:
    """Add a new URL-signing key; links signed with older keys keep working."""
    settings = _settings(data_dir, config)
    print(Secrets.rotate(settings))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
