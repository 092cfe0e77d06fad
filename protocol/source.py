"""Where a request comes from, for the throttling of failed authentications (app.domain.throttle).

The source is REMOTE_ADDR, unless REMOTE_ADDR is one of the trusted proxies (CONVHUB_TRUSTED_PROXIES):
then X-Forwarded-For is read from the right, past every trusted hop, and the first address that is not
a trusted proxy is the source (when every hop is trusted, the leftmost). Entries left of the source were
written by the client and are never believed.
One `Caller` per request, kept in the WSGI environ, so that each request counts one failure at most.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from typing import Any

from app.domain.throttle import Caller

ENVIRON_KEY = "convhub.caller"
_Net = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=8)
def _networks(trusted: tuple[str, ...]) -> tuple[_Net, ...]:
    return tuple(ipaddress.ip_network(t, strict=False) for t in trusted)


def _is_trusted(address: str, nets: tuple[_Net, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in nets)


def source_address(environ: dict[str, Any], trusted: tuple[str, ...] = ()) -> str:
    remote = str(environ.get("REMOTE_ADDR") or "-")
    nets = _networks(trusted) if trusted else ()
    if not nets or not _is_trusted(remote, nets):
        return remote
    hops = [h.strip() for h in str(environ.get("HTTP_X_FORWARDED_FOR") or "").split(",")]
    source = remote
    for hop in reversed(hops):
        if not hop:
            break
        source = hop[:64]
        if not _is_trusted(hop, nets):
            break
    # Every hop trusted (a caller inside the proxies' own network): the earliest one seen.
    return source


def caller_of(environ: dict[str, Any], trusted: tuple[str, ...] = ()) -> Caller:
    found = environ.get(ENVIRON_KEY)
    if isinstance(found, Caller):
        return found
    caller = Caller(source_address(environ, trusted))
    environ[ENVIRON_KEY] = caller
    return caller
