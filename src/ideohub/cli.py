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
app.add_typer(keys_app, name="keys")
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
