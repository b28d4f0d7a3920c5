"""Settings: defaults that work on one machine, overridden by a TOML file and ``IDEOHUB_*``.

Precedence, highest first: explicit arguments (CLI options) → ``IDEOHUB_*`` environment
variables → the TOML config file → defaults. The config file is ``--config``/``IDEOHUB_CONFIG``,
else ``<data_dir>/ideohub.toml`` when it exists. Nothing else in ideohub reads the environment.
"""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATA_DIR = Path("ideohub-data")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="IDEOHUB_", env_nested_delimiter="__", extra="ignore")

    # where everything lives
    data_dir: Path = DEFAULT_DATA_DIR
    database_url: str | None = None  # default: SQLite file in data_dir
    config: Path | None = None

    # serving
    host: str = "127.0.0.1"
    port: int = 8000
    public_base_url: str | None = None  # as clients reach us, e.g. behind a proxy; default http://host:port
    url_ttl_s: int = 24 * 3600  # image links live 24 h, as the relays promise
    signing_key_id: str | None = None  # active URL-signing key id; default: the newest (store.secrets)
    sweep_interval_s: float = 600.0

    # connections (api/server.py): a slow or greedy client never holds the server
    header_timeout_s: float = 30.0  # accept (or the end of the previous response) → complete request headers
    keepalive_timeout_s: float = 5.0  # idle time allowed between requests on one connection
    body_timeout_s: float = 60.0  # the longest wait for the next piece of a request body → 408
    max_connections: int = 1000  # open connections at once; beyond it new ones get 503 and are closed
    max_connections_per_client: int = 100  # per client address (the forwarded one from a trusted proxy) → 429
    trusted_proxies: list[str] = Field(default_factory=list)  # addresses/networks whose X-Forwarded-For is believed
    send_timeout_s: float = 60.0  # a response the client leaves unread this long → connection dropped
    max_header_bytes: int = 64 * 1024  # request line + headers; beyond it 431 and close

    # request bodies, enforced while streaming (chunked or not)
    max_body_bytes: int = 80 * 1024 * 1024  # a whole image request (multipart with files)
    max_text_body_bytes: int = 1024 * 1024  # JSON and urlencoded bodies (they carry no files)
    max_small_body_bytes: int = 64 * 1024  # routes that take no API key (admin, and everything else)
    max_upload_bytes: int = 25 * 1024 * 1024  # one file part
    max_parts: int = 64  # multipart parts, used or not
    max_text_chars: int = 10_000  # any text field (prompts: Ideogram's limit)
    max_input_pixels: int = 4096 * 4096

    # engines: operation name (e.g. "upscale", "v3-generate") → engine name; see engines.registry
    engines: dict[str, str] = Field(default_factory=lambda: {"upscale": "local-upscaler",
                                                             "v2-upscale-auto": "local-upscaler", "*": "relay"})
    # "auto": per image, photographs -> waifu2x-photo-x2, illustrations/text/flat art -> waifu2x-cunet-x2
    # (engines.upscale_router); a model name (ncnn_upscaler.MODELS) forces it; None: DEFAULT_MODEL
    upscale_model: str | None = "auto"
    upscale_tile: int = 256
    upscale_allow_x8: bool = False  # /v2 upscale x8 on the local upscaler (three passes of an x2 model)
    max_output_pixels: int = 8192 * 8192  # the largest image the local upscaler may produce (/v2 x4, x8)
    upscale_threads: int | None = None  # ncnn threads per worker; default: all cores
    model_dir: Path | None = None  # operator-supplied weights (param/bin files)

    # upstream channels declared here are upserted into the database at start-up
    channels: list[dict[str, Any]] = Field(default_factory=list)
    channel_reload_s: float = 1.0
    relay_download_hosts: list[str] = Field(default_factory=lambda: ["ideogram.ai", "*.ideogram.ai", "*.cloudfront.net"])
    relay_cooldown_s: float = 5.0
    max_download_bytes: int = 64 * 1024 * 1024  # one upstream image, enforced while reading

    # billing and limits
    prices: dict[str, dict[str, Any]] = Field(default_factory=dict)  # overrides of the shipped price table
    groups: dict[str, float] = Field(default_factory=dict)  # account group → price multiplier
    reservation_grace_s: float = 300.0  # a held reservation older than request_timeout_s + this is released
    default_rpm: int | None = None  # per-key defaults for keys created without their own limits
    default_max_images_in_flight: int | None = None
    usage_retention_days: int = 90
    redis_url: str | None = None  # shared rate limits and channel state across processes
    admin_token: str | None = Field(default=None, repr=False)  # enables the admin API (Authorization: Bearer <token>)
    metrics_token: str | None = Field(default=None, repr=False)  # /metrics: loopback clients only, unless this is set (then Bearer <token>)
    # the operator console (/console): sessions signed in with admin_token, stored in the database
    console_session_hours: float = Field(default=12.0, ge=0.05, le=24 * 30)  # a session's life from sign-in
    console_signin_per_minute: int = Field(default=10, ge=1, le=1000)  # sign-in attempts per client address

    # generations (domain.generations): liveness of the process running them, polling, webhooks
    heartbeat_s: float = 10.0  # a process marks its pending generations alive (and their money held) this often
    stale_after_s: float = 30.0  # a pending generation whose process has not beaten for this long is taken over
    poll_limit: int = 1000  # GET /v1|v2/generations/{id} per account per poll_window_s (Ideogram's limit)
    poll_window_s: float = 10.0
    webhook_allowed_hosts: list[str] = Field(default_factory=list)  # hosts/addresses where http and private addresses are allowed
    webhook_timeout_s: float = 10.0  # one delivery attempt, connect to last byte
    webhook_retry_base_s: float = 10.0  # backoff before the 2nd attempt; doubles; stops when the links expire
    webhook_max_response_bytes: int = 64 * 1024  # of a webhook target's answer, read and discarded

    # the bounded pool for heavy work (CPU engines: threads in the process that runs the engine)
    workers: int = 1
    queue_size: int = 4
    request_timeout_s: float = 600.0  # one execution, counted from when it starts (not while queued)

    # the fleet (execution.queue): with queue_url set, API instances admit and enqueue; `ideohub worker` runs engines
    queue_url: str | None = None  # redis://… (Redis streams through Taskiq); unset: in-process execution
    max_queue_wait_s: float = 600.0  # a generation still queued after this fails with a refund
    max_pending_per_account: int = 10  # queued + running generations per account; beyond it 429
    max_pending: int = 1000  # queued + running generations in all; beyond it 429
    worker_concurrency: int = 16  # generations one `ideohub worker` runs at once
    reconcile_interval_s: float = 5.0  # how often pending generations are checked (re-enqueued, expired, taken over)

    # storage (media.storage): local disk by default, or an S3-compatible object store
    storage_url: str | None = None  # s3://bucket/prefix; unset: <data_dir>/images
    s3_endpoint_url: str | None = None  # e.g. http://127.0.0.1:9000 for an S3-compatible server
    s3_region: str | None = None
    s3_access_key_id: str | None = None  # default: the AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY variables
    s3_secret_access_key: str | None = Field(default=None, repr=False)
    image_delivery: str = "stream"  # "stream": the server streams images; "redirect": 302 to a presigned URL

    # secrets (store.secrets): sealed in the database under this master secret
    secret_key: str | None = Field(default=None, repr=False)  # IDEOHUB_SECRET_KEY; default: generated into <data_dir>/secret.key

    # safety
    safety_check: bool = True
    safety_threshold: float = 0.8
    banned_prompt_terms: list[str] = Field(default_factory=list)

    # logs
    log_prompts: bool = False
    log_level: str = "INFO"

    @field_validator("engines", mode="before")
    @classmethod
    def _engines_from_json(cls, v: Any) -> Any:
        return json.loads(v) if isinstance(v, str) else v

    @field_validator("channels", "relay_download_hosts", "prices", "groups", "trusted_proxies",
                     "webhook_allowed_hosts", mode="before")
    @classmethod
    def _list_from_json(cls, v: Any) -> Any:
        return json.loads(v) if isinstance(v, str) else v

    @field_validator("image_delivery")
    @classmethod
    def _image_delivery(cls, v: str) -> str:
        if v not in ("stream", "redirect"):
            raise ValueError(f"image_delivery must be 'stream' or 'redirect', not {v!r}")
        return v

    @field_validator("banned_prompt_terms", mode="before")
    @classmethod
    def _terms_from_text(cls, v: Any) -> Any:
        if isinstance(v, str):
            return json.loads(v) if v.strip().startswith("[") else [t.strip() for t in v.split(",") if t.strip()]
        return v

    # ------------------------------------------------------------ derived

    @property
    def base_url(self) -> str:
        if self.public_base_url:
            return self.public_base_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        return f"http://{host}:{self.port}"

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'ideohub.db').resolve()}"

    @property
    def images_dir(self) -> Path:
        return self.data_dir / "images"

    @property
    def secrets_file(self) -> Path:
        """Where versions before the database held secrets kept them; imported once (store.secrets)."""
        return self.data_dir / "secrets.json"


def load_settings(**overrides: Any) -> Settings:
    """Build settings with the precedence above; ``None`` overrides are ignored."""
    overrides = {k: v for k, v in overrides.items() if v is not None}
    base = Settings(**{k: overrides[k] for k in ("data_dir", "config") if k in overrides})
    path = base.config
    if path is None:
        default = base.data_dir / "ideohub.toml"
        path = default if default.is_file() else None
    elif not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    file_values: dict[str, Any] = {}
    if path is not None:
        with open(path, "rb") as fh:
            file_values = tomllib.load(fh)
    env_values = Settings().model_dump(exclude_unset=True)  # only what IDEOHUB_* set
    return Settings(**{**file_values, **env_values, **overrides})


def private_dir(path: Path) -> None:
    """Create ``path`` mode 0700, or take group/other bits off it if it exists."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    _tighten(path, 0o700)


def _tighten(path: Path, allowed: int) -> None:
    mode = path.stat().st_mode & 0o7777
    if mode & ~allowed & 0o077:
        os.chmod(path, mode & allowed)


def __getattr__(name: str) -> Any:
    """``Secrets`` now lives in ``store.secrets`` (with the database); still importable from here."""
    if name == "Secrets":
        from .store.secrets import Secrets

        return Secrets
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
