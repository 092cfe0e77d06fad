"""Domain errors.

    ConvhubError
    ├── BadArgument          (400 / SOAP 599)
    │   ├── NotServed        (no enabled registered factory converts this)
    │   └── RequestIdReused  (a requestId sent again with a different request)
    ├── AuthenticationFailed (401 / SOAP 501)
    │   └── Throttled        (429 / SOAP 501 / HTTP 429: too many failures, with retryAfterSeconds)
    ├── FactoryDisabled      (403)
    ├── NotFound             (404 / SOAP 508)
    ├── LeaseNotHeld         (409)
    ├── BadJobState          (518)
    ├── NotOwner             (532)
    ├── TooLarge             (413)
    ├── Quarantined          (SOAP 541: the document is quarantined)
    ├── ClientQueueFull      (SOAP 540, with retryAfterSeconds)
    └── Unavailable          (503)

Each subclass's docstring is its default message; protocol adapters map classes to codes in one table.
"""

from __future__ import annotations


class ConvhubError(Exception):
    """Something went wrong."""

    def __init__(self, message: str | None = None, **fields: object) -> None:
        self.message = message or (self.__doc__ or "error").strip().splitlines()[0]
        self.fields = fields
        super().__init__(self.message)


class BadArgument(ConvhubError):
    """Bad argument."""


class NotServed(BadArgument):
    """No registered factory serves this conversion."""


class RequestIdReused(BadArgument):
    """This requestId was already used for a different request."""


class AuthenticationFailed(ConvhubError):
    """Authentication failed."""


class Throttled(AuthenticationFailed):
    """Too many failed authentications from this address; retry later."""


class FactoryDisabled(ConvhubError):
    """Factory is disabled."""


class NotFound(ConvhubError):
    """No such object."""


class LeaseNotHeld(ConvhubError):
    """Lease not held: it expired, was reclaimed, belongs to another factory, or the token is wrong."""


class BadJobState(ConvhubError):
    """The job is not in a state that allows this."""


class NotOwner(ConvhubError):
    """The client application does not own this job."""


class TooLarge(ConvhubError):
    """Document too large."""


class Quarantined(ConvhubError):
    """The document is quarantined: its conversions failed or hung on several factories."""


class Unavailable(ConvhubError):
    """Database or broker unavailable."""


class ClientQueueFull(ConvhubError):
    """The client application's queue is full; retry later."""
