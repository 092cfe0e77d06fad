"""The one place that reads the environment.

Everything else receives a :class:`Settings` object; tests build one directly.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path


class ConfigError(Exception):
    """A configuration value is missing or invalid."""


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer") from None
    if value < minimum:
        raise ConfigError(f"{name}={raw!r} must be at least {minimum}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}={raw!r} is not a boolean (use true/false)")


def _networks(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """Comma-separated addresses or networks (10.0.0.0/8, ::1), each checked; kept as text."""
    out = []
    for item in (x.strip() for x in env.get(name, "").split(",")):
        if not item:
            continue
        try:
            out.append(str(ipaddress.ip_network(item, strict=False)))
        except ValueError:
            raise ConfigError(f"{name}: {item!r} is not an IP address or network") from None
    return tuple(out)


def _url(env: Mapping[str, str], name: str, default: str, schemes: tuple[str, ...]) -> str:
    raw = env.get(name, "").strip() or default
    scheme = raw.split(":", 1)[0].lower()
    if "://" not in raw or scheme not in schemes:
        raise ConfigError(f"{name}={raw!r} must be a URL starting with one of: {', '.join(schemes)}")
    return raw


_DB_SCHEMES = ("sqlite", "postgresql", "postgresql+psycopg2", "postgresql+psycopg")
_BROKER_SCHEMES = ("sqla+sqlite", "sqla+postgresql", "redis", "rediss", "amqp", "amqps", "pyamqp", "memory")
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


@dataclass(frozen=True)
class Settings:
    """Typed configuration; see the README's configuration table for each field."""

    data_dir: Path = Path("var")
    database_url: str = ""
    broker_url: str = ""
    public_url: str = "http://127.0.0.1:8080"
    lease_seconds: int = 300
    max_lease_total_seconds: int = 3600
    max_attempts: int = 3
    max_document_bytes: int = 100 * 1024 * 1024
    reclaim_interval_seconds: int = 15
    reconcile_interval_seconds: int = 60
    retention_days: int = 30
    callback_allow_private: bool = False
    # Result cache: a hit may share another client's result (off: it would reveal what they converted).
    share_results_across_clients: bool = False
    callback_timeout_seconds: int = 10
    trust_proxy_client_cert_header: str = ""
    operator_user: str = "admin"
    operator_password: str = ""
    flower_port: int = 5555
    log_level: str = "INFO"
    log_format: str = "text"
    auth_cache_seconds: int = 60
    # Failed authentications per window, per (name, address) and per address; 0 turns one off.
    auth_throttle_per_name: int = 10
    auth_throttle_per_address: int = 50
    auth_throttle_window_seconds: int = 60
    auth_throttle_max_entries: int = 10_000
    # Proxies (addresses or networks) whose X-Forwarded-For names the real source address.
    trusted_proxies: tuple[str, ...] = ()
    client_max_queued: int = 10_000
    metrics_client_names: bool = False
    # `convhub web`: read each request body whole, with no thread, before the app runs (off only
    # behind a proxy that buffers bodies itself), and the time a body has to arrive.
    web_buffer_bodies: bool = True
    web_body_timeout_seconds: int = 120
    # PostgreSQL: how long one statement (and a transaction left idle) may hold a connection, in
    # the web app; the Celery worker's maintenance (set-based reclaims and deletes) and the CLI's
    # operator commands have their own, longer limit. 0: none.
    statement_timeout_seconds: int = 30
    maintenance_statement_timeout_seconds: int = 600

    def __post_init__(self) -> None:
        if not self.database_url:
            object.__setattr__(self, "database_url", f"sqlite:///{(self.data_dir / 'convhub.db').resolve()}")
        if not self.broker_url:
            object.__setattr__(self, "broker_url", f"sqla+sqlite:///{(self.data_dir / 'broker.db').resolve()}")

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def broker_kind(self) -> str:
        """'redis', 'amqp', 'sqla' or 'memory'."""
        scheme = self.broker_url.split("://", 1)[0]
        if scheme.startswith("sqla"):
            return "sqla"
        if scheme.startswith("redis"):
            return "redis"
        if scheme in ("amqp", "amqps", "pyamqp"):
            return "amqp"
        return scheme

    @property
    def max_request_bytes(self) -> int:
        """Largest HTTP body accepted: a base64 document plus envelope overhead.

        Base64 may carry MIME line breaks (xmlrpc.client.Binary writes 76 chars + newline; CRLF
        allowed): 78/76 of the bare length, so a document at the limit is not refused by size."""
        return (self.max_document_bytes * 4) // 3 * 78 // 76 + 64 * 1024

    @property
    def visibility_timeout_seconds(self) -> int:
        """Broker visibility timeout: longer than the longest possible lease."""
        return self.max_lease_total_seconds + self.lease_seconds + 600

    def with_(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read CONVHUB_* variables; raise ConfigError naming the bad variable."""
    env = os.environ if env is None else env
    data_dir = Path(env.get("CONVHUB_DATA_DIR", "").strip() or "var")
    db_default = f"sqlite:///{(data_dir / 'convhub.db').resolve()}"
    broker_default = f"sqla+sqlite:///{(data_dir / 'broker.db').resolve()}"
    lease = _int(env, "CONVHUB_LEASE_SECONDS", 300, minimum=5)
    total = _int(env, "CONVHUB_MAX_LEASE_TOTAL_SECONDS", 3600, minimum=5)
    if total < lease:
        raise ConfigError(f"CONVHUB_MAX_LEASE_TOTAL_SECONDS={total} must be at least CONVHUB_LEASE_SECONDS={lease}")
    level = env.get("CONVHUB_LOG_LEVEL", "INFO").strip().upper() or "INFO"
    if level not in _LOG_LEVELS:
        raise ConfigError(f"CONVHUB_LOG_LEVEL={level!r} must be one of {', '.join(_LOG_LEVELS)}")
    fmt = env.get("CONVHUB_LOG_FORMAT", "text").strip().lower() or "text"
    if fmt not in ("text", "json"):
        raise ConfigError(f"CONVHUB_LOG_FORMAT={fmt!r} must be text or json")
    return Settings(
        data_dir=data_dir,
        database_url=_url(env, "CONVHUB_DATABASE_URL", db_default, _DB_SCHEMES),
        broker_url=_url(env, "CONVHUB_BROKER_URL", broker_default, _BROKER_SCHEMES),
        public_url=_url(env, "CONVHUB_PUBLIC_URL", "http://127.0.0.1:8080", ("http", "https")).rstrip("/"),
        lease_seconds=lease,
        max_lease_total_seconds=total,
        max_attempts=_int(env, "CONVHUB_MAX_ATTEMPTS", 3, minimum=1),
        max_document_bytes=_int(env, "CONVHUB_MAX_DOCUMENT_BYTES", 100 * 1024 * 1024, minimum=1024),
        reclaim_interval_seconds=_int(env, "CONVHUB_RECLAIM_INTERVAL_SECONDS", 15, minimum=1),
        reconcile_interval_seconds=_int(env, "CONVHUB_RECONCILE_INTERVAL_SECONDS", 60, minimum=1),
        retention_days=_int(env, "CONVHUB_RETENTION_DAYS", 30, minimum=0),
        callback_allow_private=_bool(env, "CONVHUB_CALLBACK_ALLOW_PRIVATE", False),
        share_results_across_clients=_bool(env, "CONVHUB_SHARE_RESULTS_ACROSS_CLIENTS", False),
        callback_timeout_seconds=_int(env, "CONVHUB_CALLBACK_TIMEOUT_SECONDS", 10, minimum=1),
        trust_proxy_client_cert_header=env.get("CONVHUB_TRUST_CLIENT_CERT_HEADER", "").strip(),
        operator_user=env.get("CONVHUB_OPERATOR_USER", "admin").strip() or "admin",
        operator_password=env.get("CONVHUB_OPERATOR_PASSWORD", ""),
        flower_port=_int(env, "CONVHUB_FLOWER_PORT", 5555, minimum=1),
        log_level=level,
        log_format=fmt,
        auth_cache_seconds=_int(env, "CONVHUB_AUTH_CACHE_SECONDS", 60, minimum=0),
        auth_throttle_per_name=_int(env, "CONVHUB_AUTH_THROTTLE_PER_NAME", 10, minimum=0),
        auth_throttle_per_address=_int(env, "CONVHUB_AUTH_THROTTLE_PER_ADDRESS", 50, minimum=0),
        auth_throttle_window_seconds=_int(env, "CONVHUB_AUTH_THROTTLE_WINDOW_SECONDS", 60, minimum=1),
        auth_throttle_max_entries=_int(env, "CONVHUB_AUTH_THROTTLE_MAX_ENTRIES", 10_000, minimum=100),
        trusted_proxies=_networks(env, "CONVHUB_TRUSTED_PROXIES"),
        client_max_queued=_int(env, "CONVHUB_CLIENT_MAX_QUEUED", 10_000, minimum=1),
        metrics_client_names=_bool(env, "CONVHUB_METRICS_CLIENT_NAMES", False),
        web_buffer_bodies=_bool(env, "CONVHUB_WEB_BUFFER_BODIES", True),
        web_body_timeout_seconds=_int(env, "CONVHUB_WEB_BODY_TIMEOUT_SECONDS", 120, minimum=1),
        statement_timeout_seconds=_int(env, "CONVHUB_STATEMENT_TIMEOUT_SECONDS", 30, minimum=0),
        maintenance_statement_timeout_seconds=_int(env, "CONVHUB_MAINTENANCE_STATEMENT_TIMEOUT_SECONDS", 600, minimum=0),
    )
