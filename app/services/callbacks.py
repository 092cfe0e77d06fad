"""Client callbacks (successUrl/failureUrl): an outbox in the database, delivered with retries."""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable
from datetime import datetime, timedelta
from urllib.parse import urlencode, urlsplit, urlunsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.engine import Database, after_commit
from app.db.models import Callback
from app.domain.errors import BadArgument
from app.services import counters
from app.services.ports import Notifier

MAX_ATTEMPTS = 8
HttpGet = Callable[[str, float], int]  # (url, timeout) -> HTTP status; raises on transport errors
Resolver = Callable[[str], list[str]]


def queue(session: Session, now: datetime, notifier: Notifier, job_id: int, url: str | None, state: int) -> None:
    """Owe the job's client a callback for `state` (nothing when it gave no URL); sent after the commit."""
    if not url:
        return
    cb = Callback(job_id=job_id, url=url, job_status=int(state), attempts=0, next_attempt_at=now, created_at=now)
    session.add(cb)
    session.flush()
    cb_id = cb.id
    after_commit(session, lambda: notifier.send_callback(cb_id))


def _resolve(host: str) -> list[str]:
    return [str(info[4][0]) for info in socket.getaddrinfo(host, None)]


MAX_URL_CHARS = 2000
_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)", re.I)


def _valid_host(host: str) -> bool:
    """A DNS name of letter-digit-hyphen labels, or an IPv4/IPv6 address."""
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    labels = host.removesuffix(".").split(".")
    return len(host) <= 253 and all(_LABEL.fullmatch(label) for label in labels)


def check_url(url: str, *, allow_private: bool, resolve: Resolver = _resolve) -> None:
    """Only http/https, and no private, loopback or link-local targets unless allowed."""
    if len(url) > MAX_URL_CHARS:
        raise BadArgument(f"callback URL is longer than {MAX_URL_CHARS} characters")
    if any(c.isspace() or not c.isprintable() for c in url):
        # CR/LF would end the request line of the callback's GET: no whitespace or control characters.
        raise BadArgument("callback URL must not contain spaces or control characters")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadArgument(f"callback URL {url!r} must be http or https with a host")
    try:
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError:
        raise BadArgument(f"callback URL {url!r} has an invalid port") from None
    if not _valid_host(parts.hostname):
        raise BadArgument(f"callback host {parts.hostname!r} is not a valid host name or address")
    if allow_private:
        return
    try:
        addrs = resolve(parts.hostname)
    except OSError:
        raise BadArgument(f"callback host {parts.hostname!r} does not resolve") from None
    for a in addrs:
        ip = ipaddress.ip_address(a.split("%", 1)[0])
        if ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_reserved or ip.is_unspecified:
            raise BadArgument(f"callback host {parts.hostname!r} is a private or loopback address")


def with_params(url: str, job_id: int, job_status: int) -> str:
    parts = urlsplit(url)
    extra = urlencode({"jobId": job_id, "jobStatus": job_status})
    query = f"{parts.query}&{extra}" if parts.query else extra
    return urlunsplit((parts.scheme, parts.netloc, parts.path or "/", query, parts.fragment))


def backoff(attempts: int) -> timedelta:
    return timedelta(seconds=min(3600, 10 * 2 ** max(0, attempts - 1)))


def deliver(
    session: Session, now: datetime, callback_id: int, http_get: HttpGet, *, timeout: float, allow_private: bool, resolve: Resolver = _resolve
) -> bool:
    """Try one callback; on failure schedule the next attempt. Returns True once delivered."""
    q = select(Callback).where(Callback.id == callback_id, Callback.done_at.is_(None))
    if session.get_bind().dialect.name == "postgresql":
        q = q.with_for_update(skip_locked=True)
    cb = session.scalar(q)
    if cb is None:
        return False
    cb.attempts += 1
    try:
        check_url(cb.url, allow_private=allow_private, resolve=resolve)
        status = http_get(with_params(cb.url, cb.job_id, cb.job_status), timeout)
        if status >= 400:
            raise OSError(f"HTTP {status}")
    except (OSError, BadArgument, ValueError) as exc:
        counters.bump(session, counters.CALLBACK_FAILURES)
        cb.last_error = str(exc)[:500] or exc.__class__.__name__
        if isinstance(exc, BadArgument) or cb.attempts >= MAX_ATTEMPTS:
            cb.done_at = now  # given up; last_error says why
        else:
            cb.next_attempt_at = now + backoff(cb.attempts)
        return False
    cb.done_at = now
    cb.last_error = None
    return True


def due(session: Session, now: datetime, limit: int = 100) -> list[int]:
    return list(
        session.scalars(
            select(Callback.id).where(Callback.done_at.is_(None), Callback.next_attempt_at <= now).order_by(Callback.next_attempt_at).limit(limit)
        ).all()
    )


def deliver_one(
    db: Database, now: datetime, callback_id: int, http_get: HttpGet, *, timeout: float, allow_private: bool
) -> bool:
    """`deliver` in its own transaction (the send_callback task)."""
    with db.session() as s:
        return deliver(s, now, callback_id, http_get, timeout=timeout, allow_private=allow_private)


def send_due(db: Database, now: datetime, send: Callable[[int], object]) -> int:
    """Hand every callback due for an attempt to `send` (the task queue); how many."""
    with db.read_session() as s:
        ids = due(s, now)
    for cb_id in ids:
        send(cb_id)
    return len(ids)
