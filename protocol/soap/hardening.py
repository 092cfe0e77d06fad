"""Hardened XML in, bounded bodies, Faults instead of tracebacks."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterable
from typing import Any
from xml.sax.saxutils import escape

from .compat import Fault, InterfaceDocuments, Soap11, ValidationError, Wsdl11

log = logging.getLogger("convhub.soap")


class HardenedSoap11(Soap11):
    """SOAP 1.1 over lxml with entity resolution, DTD loading, network access and huge trees off.

    lxml 6 refuses entity amplification (billion laughs) with an XMLSyntaxError, which spyne turns into
    a Client fault. A SOAP message must not carry a document type declaration at all (SOAP 1.1 §3),
    so any DOCTYPE is refused before the body is looked at: no internal entity is ever expanded.
    """

    def __init__(self, **kw: Any) -> None:
        kw.update(
            resolve_entities=False,
            huge_tree=False,
            no_network=True,
            load_dtd=False,
            dtd_validation=False,
            attribute_defaults=False,
        )
        super().__init__(**kw)

    def byte_array_from_element(self, ctx: Any, cls: Any, element: Any) -> Any:
        # An empty xs:base64Binary is valid XML Schema; spyne would refuse it with a Fault. Let it
        # through so the service answers a readable 599 ("document is empty") instead.
        if not (element.text or "").strip():
            return [b""]
        try:
            return super().byte_array_from_element(ctx, cls, element)
        except ValueError:  # binascii.Error escapes spyne as is: it is a schema error, so a Fault
            raise ValidationError(element.tag.rsplit("}", 1)[-1], "%s is not valid base64") from None

    # xsd:dateTime-shaped text can still name no instant (month 13, hour 99, year 0, offset +99:00):
    # spyne's regex accepts it and datetime() raises ValueError, which spyne does not expect and the
    # client got a Server fault. It is the client's error: a Client.ValidationError naming the value.
    # (SOAP reads element text with the _iso variant; the others serve the remaining spyne paths.)
    def datetime_from_unicode_iso(self, cls: Any, string: Any) -> Any:
        try:
            return super().datetime_from_unicode_iso(cls, string)
        except (ValueError, OverflowError) as exc:
            raise _bad_datetime(string, exc) from None

    def datetime_from_unicode(self, cls: Any, string: Any) -> Any:
        try:
            return super().datetime_from_unicode(cls, string)
        except (ValueError, OverflowError) as exc:
            raise _bad_datetime(string, exc) from None

    def datetime_from_bytes(self, cls: Any, string: Any) -> Any:
        try:
            return super().datetime_from_bytes(cls, string)
        except (ValueError, OverflowError) as exc:
            raise _bad_datetime(string, exc) from None

    def create_in_document(self, ctx: Any, charset: str | None = None) -> None:
        super().create_in_document(ctx, charset)
        root = ctx.in_document[0]
        info = root.getroottree().docinfo
        if info.doctype or info.internalDTD is not None or info.externalDTD is not None:
            raise Fault("Client.DTDNotAllowed", "a SOAP message must not contain a document type declaration")


def _bad_datetime(value: Any, exc: Exception) -> ValidationError:
    if isinstance(exc, ValidationError):
        return exc
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    reason = str(exc.args[0]) if exc.args else type(exc).__name__
    # custom_msg goes through %-formatting with the value: keep both out of the format string.
    return ValidationError(f"{text[:64]!r} is not a valid xsd:dateTime ({reason[:80]})", "%s")


class ClientFaultLogFilter(logging.Filter):
    """spyne logs every Fault it answers with a traceback; a Client fault is the caller's error and
    is answered in full on the wire, so it is not logged (Server faults still are)."""

    def filter(self, record: logging.LogRecord) -> bool:
        fault = record.msg if isinstance(record.msg, Fault) else None
        if fault is None and record.exc_info and isinstance(record.exc_info[1], Fault):
            fault = record.exc_info[1]
        code = str(getattr(fault, "faultcode", "") or "")
        return not (code == "Client" or code.startswith("Client."))


def quiet_client_faults() -> None:
    """Install ClientFaultLogFilter on the loggers spyne reports answered Faults through (idempotent)."""
    for name in ("spyne.server._base", "spyne.server.wsgi", "spyne.application", "spyne.application.client"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, ClientFaultLogFilter) for f in logger.filters):
            logger.addFilter(ClientFaultLogFilter())


class UnqualifiedDocuments(InterfaceDocuments):
    """The WSDL's schema says elementFormDefault="unqualified", matching the seed's requests."""

    def __init__(self, interface: Any) -> None:
        super().__init__(interface)
        self.wsdl11 = Wsdl11(interface, element_form_default="unqualified")


def fault_response(
    start_response: Callable[..., Any], code: str, message: str, exc_info: Any = None
) -> list[bytes]:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<soap11env:Envelope xmlns:soap11env="http://schemas.xmlsoap.org/soap/envelope/"><soap11env:Body>'
        f"<soap11env:Fault><faultcode>soap11env:{escape(code)}</faultcode><faultstring>{escape(message)}</faultstring>"
        "</soap11env:Fault></soap11env:Body></soap11env:Envelope>"
    ).encode()
    start_response(
        "500 Internal Server Error",
        [
            ("Content-Type", "text/xml; charset=utf-8"),
            ("Content-Length", str(len(body))),
            ("Connection", "close"),
        ],
        exc_info,
    )
    return [body]


def size_limited(app: Callable[..., Any], limit: int) -> Callable[..., Any]:
    """Refuse a body over `limit` bytes before reading it (spyne would buffer it whole first)."""

    def guarded(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD", "GET").upper() == "POST":
            raw = (environ.get("CONTENT_LENGTH") or "").strip()
            chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
            try:
                length = int(raw) if raw else None
            except ValueError:
                return fault_response(start_response, "Client", "bad Content-Length")
            if length is not None and length > limit:
                return fault_response(
                    start_response, "Client.RequestTooLong", f"request body exceeds {limit} bytes"
                )
            if (length == 0 or length is None) and not chunked:
                return fault_response(start_response, "Client", "empty request")
        try:
            return app(environ, start_response)  # type: ignore[no-any-return]
        except Exception:  # noqa: BLE001 - spyne let something escape: still a Fault, never a traceback
            log.exception("soap request failed outside an operation")
            return fault_response(start_response, "Server", "internal error", exc_info=sys.exc_info())

    return guarded
