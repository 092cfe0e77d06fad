"""The wire side of the pull factory: an authenticated XML-RPC proxy, the contract's fault codes and
the parsing of what the server sends (SPEC.md, "XML-RPC")."""

from __future__ import annotations

import base64
import datetime as dt
import xmlrpc.client
from typing import Any
from urllib.parse import urlsplit, urlunsplit

# Fault codes of the wire contract.
BAD_ARGUMENT, AUTH_FAILED, DISABLED, NOT_FOUND, LEASE_LOST, TOO_LARGE, UNAVAILABLE = (
    400,
    401,
    403,
    404,
    409,
    413,
    503,
)
THROTTLED = 429  # too many failed sign-ins from this address: wait, as for 503


class _AuthMixin:
    """Adds HTTP Basic and a socket timeout; keeps the secret out of the URL (and so out of logs)."""

    _auth_header: str
    _timeout: float

    def get_host_info(self, host: Any) -> tuple[str, list[tuple[str, str]], dict[str, str]]:
        host, extra, x509 = super().get_host_info(host)  # type: ignore[misc]
        return host, list(extra or []) + [("Authorization", self._auth_header)], x509

    def make_connection(self, host: Any) -> Any:  # HTTPConnection, or HTTPSConnection for SafeTransport
        conn = super().make_connection(host)  # type: ignore[misc]
        conn.timeout = self._timeout
        return conn


class _Transport(_AuthMixin, xmlrpc.client.Transport):
    pass


class _SafeTransport(_AuthMixin, xmlrpc.client.SafeTransport):
    pass


def xmlrpc_url(server_url: str) -> str:
    """The server's base URL (or its /xmlrpc URL) -> the /xmlrpc endpoint, without userinfo."""
    parts = urlsplit(server_url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"server URL must be http(s)://host[:port][/path], got {server_url!r}")
    netloc = parts.netloc.rsplit("@", 1)[-1]
    path = parts.path.rstrip("/")
    if not path.endswith("/xmlrpc"):
        path += "/xmlrpc"
    return urlunsplit((parts.scheme, netloc, path, "", ""))


def make_proxy(server_url: str, name: str, secret: str, timeout: float = 60.0) -> xmlrpc.client.ServerProxy:
    """A ServerProxy for ``server_url + /xmlrpc`` authenticating as factory ``name``."""
    url = xmlrpc_url(server_url)
    cls: type[_Transport] | type[_SafeTransport] = _SafeTransport if url.startswith("https:") else _Transport
    transport = cls()
    token = base64.b64encode(f"{name}:{secret}".encode()).decode("ascii")
    transport._auth_header = f"Basic {token}"
    transport._timeout = timeout
    return xmlrpc.client.ServerProxy(url, transport=transport)


def parse_lease_expires(value: Any) -> float | None:
    """leaseExpires (xmlrpc DateTime, datetime or ISO 8601 text, UTC when naive) -> epoch seconds."""
    if value is None or value == "":
        return None
    if isinstance(value, xmlrpc.client.DateTime):
        value = value.value
    if isinstance(value, dt.datetime):
        stamp = value
    else:
        text = str(value).strip()
        parsed: dt.datetime | None = None
        for fmt in ("%Y%m%dT%H:%M:%S", "%Y%m%dT%H%M%S"):
            try:
                parsed = dt.datetime.strptime(text[:17] if fmt == "%Y%m%dT%H:%M:%S" else text, fmt)
                break
            except ValueError:
                pass
        if parsed is None:
            try:
                parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
            except ValueError:
                return None
        stamp = parsed
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=dt.UTC)
    return stamp.timestamp()


def fault_line(exc: BaseException) -> str:
    """One line for a fault, an HTTP error or a network error."""
    if isinstance(exc, xmlrpc.client.Fault):
        text = " ".join(str(exc.faultString).split())
        return f"fault {exc.faultCode}: {text}"
    if isinstance(exc, xmlrpc.client.ProtocolError):
        return f"HTTP {exc.errcode} {exc.errmsg}"
    return " ".join(str(exc).split()) or type(exc).__name__
