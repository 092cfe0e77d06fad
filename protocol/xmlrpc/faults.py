"""The one table from exceptions to XML-RPC fault codes (docs/factory-protocol.md, "Faults")."""

from __future__ import annotations

import logging

from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import RequestEntityTooLarge

from app.domain.errors import (
    AuthenticationFailed,
    BadArgument,
    BadJobState,
    FactoryDisabled,
    LeaseNotHeld,
    NotFound,
    NotOwner,
    Throttled,
    TooLarge,
    Unavailable,
)

log = logging.getLogger("convhub.xmlrpc")

INTERNAL = 500

# First match wins. The message sent is the exception's own one-line text, except for 503 and
# 500, whose causes (SQL, driver messages, paths) never leave the server: they are logged.
FAULTS: tuple[tuple[type[BaseException], int, str | None], ...] = (
    (BadArgument, 400, None),
    (Throttled, 429, None),  # before its base class: too many failed authentications
    (AuthenticationFailed, 401, None),
    (FactoryDisabled, 403, None),
    (NotOwner, 403, None),
    (NotFound, 404, None),
    (LeaseNotHeld, 409, None),
    (BadJobState, 409, None),
    (TooLarge, 413, None),
    (RequestEntityTooLarge, 413, "request body is too large"),
    (Unavailable, 503, "database or broker unavailable, retry later"),
    (OperationalError, 503, "database or broker unavailable, retry later"),
    (PoolTimeout, 503, "database or broker unavailable, retry later"),
)
MAX_FAULT_STRING = 300


def one_line(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= MAX_FAULT_STRING else text[: MAX_FAULT_STRING - 3] + "..."


def fault_for(exc: BaseException) -> tuple[int, str]:
    """(faultCode, faultString) for an exception raised while serving a call."""
    for cls, code, fixed in FAULTS:
        if isinstance(exc, cls):
            if code >= 500:
                log.warning("xmlrpc: %s (%s)", fixed, exc.__class__.__name__, exc_info=exc)
            return code, one_line(fixed or getattr(exc, "message", None) or str(exc) or cls.__name__)
    log.error("xmlrpc: internal error", exc_info=exc)
    return INTERNAL, "internal server error"
