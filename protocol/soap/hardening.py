"""Hardened XML in, bounded bodies, Faults instead of tracebacks."""

from __future__ import annotations

import logging
import re
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
        if isinstance(string, str) and not _XSD_DATETIME.fullmatch(string.strip()):
            # spyne's patterns only match a prefix: "1970-01-01T00:00:00Z'; DROP ..." was a date.
            raise _bad_datetime(string, ValueError("not in the form YYYY-MM-DDThh:mm:ss[.s][Z|±hh:mm]"))
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
        env = getattr(getattr(ctx, "transport", None), "req_env", None) or {}
        body = root.find("{http://schemas.xmlsoap.org/soap/envelope/}Body")
        ops = [el for el in body if isinstance(el.tag, str)] if body is not None else []
        if body is not None and len(ops) != 1:
            # document/literal wrapped: exactly one operation element (WS-I BP R2201). spyne would
            # run the first of several, or fail on none.
            raise Fault("Client.BadBody", f"the SOAP Body must hold exactly one operation element, not {len(ops)}")
        if ops:
            op = ops[0].tag.rpartition("}")[2].removesuffix("Request")
            if not action_matches(env, op):
                raise Fault(
                    "Client.SOAPActionMismatch",
                    f"SOAPAction {soap_action(env)[:80]!r} does not name the operation {op[:80]!r}",
                )


def soap_action(environ: dict[str, Any]) -> str:
    """The SOAPAction header's value without quotes ("" when absent or empty)."""
    return str(environ.get("HTTP_SOAPACTION") or "").strip().strip('"').strip()


def action_matches(environ: dict[str, Any], op: str) -> bool:
    """True unless a SOAPAction is given that names another operation. The WSDL declares each
    operation's name as its soapAction; a namespace or URL before it ("…/ContentService/op") is
    accepted, as clients add one. An absent or empty SOAPAction means "see the body" (SOAP 1.1 §6.1.1)."""
    action = soap_action(environ)
    return not action or re.split(r"[/#:]", action)[-1] == op


_XSD_DATETIME = re.compile(r"-?\d{4,}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)?")


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


MAX_MESSAGE = 300


def one_line(message: str | None) -> str | None:
    """A statusMessage or faultstring is one line of at most MAX_MESSAGE characters: messages quote
    the caller's values (which may be a megabyte long or carry line breaks) and libxml2's errors
    end with a line break."""
    if message is None:
        return None
    text = " ".join(str(message).split())
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3] + "..."


class OneLineFaults(Soap11):
    """SOAP 1.1 out: every faultstring is one line (`one_line`)."""

    def fault_to_parent(self, ctx: Any, cls: Any, inst: Any, parent: Any, ns: Any, *args: Any, **kwargs: Any) -> Any:
        inst.faultstring = one_line(inst.faultstring)
        return super().fault_to_parent(ctx, cls, inst, parent, ns, *args, **kwargs)


class BadBody(Exception):
    """The request body broke off or was framed wrongly (short of its Content-Length, bad chunking)."""


class CheckedInput:
    """wsgi.input that raises BadBody when the body ends before its Content-Length or its chunked
    framing is broken; spyne would quietly parse what arrived (a truncated body is not a request)."""

    def __init__(self, raw: Any, length: int | None) -> None:
        self.raw, self.length, self.received = raw, length, 0

    def read(self, size: int = -1) -> bytes:
        """Exactly `size` bytes (the rest of the body for -1), fewer only at the body's end."""
        if self.length is not None:
            left = self.length - self.received
            size = left if size is None or size < 0 else min(size, left)
            if size <= 0:
                return b""
        out = bytearray()
        while size < 0 or len(out) < size:
            try:
                data = self.raw.read(size - len(out) if size >= 0 else 1 << 20)
            except (OSError, ValueError) as exc:  # werkzeug's de-chunking: "Invalid chunk header"
                raise BadBody(f"malformed request body: {exc}") from None
            if not data:
                break
            out += data
        self.received += len(out)
        if self.length is not None and len(out) < size:
            raise BadBody(f"request body ended after {self.received} of {self.length} bytes")
        return bytes(out)

    def readline(self, size: int = -1) -> bytes:
        return self.read(size if size and size > 0 else 65536)


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
            if length is not None and length < 0:
                return fault_response(start_response, "Client", "bad Content-Length")
            if length is not None and length > limit:
                return fault_response(
                    start_response, "Client.RequestTooLong", f"request body exceeds {limit} bytes"
                )
            if (length == 0 or length is None) and not chunked:
                return fault_response(start_response, "Client", "empty request")
            environ["wsgi.input"] = CheckedInput(environ["wsgi.input"], None if chunked else length)
        try:
            return app(environ, start_response)  # type: ignore[no-any-return]
        except BadBody as exc:
            return fault_response(start_response, "Client.BadBody", str(exc))
        except UnicodeDecodeError:
            return fault_response(start_response, "Client.BadEncoding", "the request is not text in its declared encoding")
        except StopIteration:  # spyne's parser found no body at all (a chunked body of no chunks)
            return fault_response(start_response, "Client", "empty request")
        except Exception:  # spyne let something escape: still a Fault, never a traceback
            log.exception("soap request failed outside an operation")
            return fault_response(start_response, "Server", "internal error", exc_info=sys.exc_info())

    return guarded
