"""SOAP adapter for client applications: the Tundra ContentService, mounted beside Flask.

Wire rules (SPEC "SOAP"): document/literal wrapped, `<op>Request` / `<op>Response` elements in the
ContentService namespace, unqualified children (qualified ones are accepted too: spyne's soft
validation matches children by local name). Every response is HTTP 200 with `<status>` first and a
`<statusMessage>` on errors; SOAP Faults are only for XML that is not a valid request.

This module only translates: wire arguments -> one service call -> status code. Domain errors map to
status codes in one table (`_STATUS`); anything unexpected is logged and answered 599 without detail.
"""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from werkzeug.middleware.dispatcher import DispatcherMiddleware

from app.db.blobs import read_blob
from app.domain.errors import (
    AuthenticationFailed,
    BadArgument,
    BadJobState,
    ConvhubError,
    NotFound,
    NotOwner,
    TooLarge,
    Unavailable,
)
from app.domain.matching import matching_workers
from app.domain.states import JobState
from app.metrics import SOAP_STATUS
from app.runtime import Runtime
from app.services import admin, callbacks, jobs
from app.services.auth import ClientIdentity

# spyne 2.14 (its last release) imports `cgi` and vendors a six whose meta-path importer predates
# PEP 451: both warn at import time, which a `-W error` run (our pytest setting) turns into errors.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", ImportWarning)
    warnings.simplefilter("ignore", DeprecationWarning)
    from spyne import (
        Application,
        ByteArray,
        ComplexModel,
        DateTime,
        Fault,
        Integer,
        Long,
        ServiceBase,
        Unicode,
        rpc,
    )
    from spyne.error import ValidationError
    from spyne.interface._base import InterfaceDocuments
    from spyne.interface.wsdl import Wsdl11
    from spyne.protocol.soap import Soap11
    from spyne.server.wsgi import WsgiApplication


def _modernise_six_importer() -> None:
    """Give spyne's vendored six importer the PEP 451 methods six 1.16 has.

    Without them, every later import that misses (e.g. prometheus_client's optional `import snappy`)
    makes Python 3.11 warn "_SixMetaPathImporter.find_spec() not found" from whatever imports next.
    """
    import importlib.util
    import types

    for finder in sys.meta_path:
        if type(finder).__name__ != "_SixMetaPathImporter" or hasattr(finder, "find_spec"):
            continue

        def find_spec(self: Any, fullname: str, path: Any = None, target: Any = None) -> Any:
            return importlib.util.spec_from_loader(fullname, self) if fullname in self.known_modules else None

        def create_module(self: Any, spec: Any) -> Any:
            return self.load_module(spec.name)

        def exec_module(self: Any, module: Any) -> None:
            return None

        finder.find_spec = types.MethodType(find_spec, finder)  # type: ignore[attr-defined]
        finder.create_module = types.MethodType(create_module, finder)  # type: ignore[attr-defined]
        finder.exec_module = types.MethodType(exec_module, finder)  # type: ignore[attr-defined]


_modernise_six_importer()

log = logging.getLogger("convhub.soap")

NS = "http://www.yospace.com/tundra/ContentService/"
PATH = "/cds-controller/contentService"

OK = 200
BAD_CLIENT_APPLICATION_CREDENTIALS = 501
BAD_JOB_ID = 508
BAD_JOB_STATE = 518
CLIENT_APPLICATION_DOES_NOT_OWN_JOB = 532
GENERAL_ERROR = 599

# Domain error -> status code: the one table. Subclasses are matched in order.
_STATUS: tuple[tuple[type[ConvhubError], int], ...] = (
    (AuthenticationFailed, BAD_CLIENT_APPLICATION_CREDENTIALS),
    (NotFound, BAD_JOB_ID),
    (BadJobState, BAD_JOB_STATE),
    (NotOwner, CLIENT_APPLICATION_DOES_NOT_OWN_JOB),
    (BadArgument, GENERAL_ERROR),
    (TooLarge, GENERAL_ERROR),
    (Unavailable, GENERAL_ERROR),
)

# Largest base64 text one element can carry: libxml2's text-node limit without huge_tree, which we
# keep off. contentUpload therefore accepts the document as one or more `content` parts.
MAX_TEXT_NODE = 10_000_000
# The one statusMessage of 501: unknown client and wrong credentials read the same.
AUTH_FAILED = "authentication failed"
OPERATION_UPLOAD = "contentUpload"  # streamed on success: protocol/soap_streaming.py
# getContentConvertResult answers in `content` parts of this many bytes (8,000,000 base64 characters),
# so a stock client (zeep, JAX-WS: libxml2 or similar limits) parses any result; a multiple of 3, so
# each part's base64 stands alone.
RESULT_PART_BYTES = 6_000_000


# ------------------------------------------------------------------ wire types
# Every child element is unqualified (sub_ns=""), as in the seed's examples.


def _in(t: Any, **kw: Any) -> Any:
    """A request child: required unless min_occurs=0 is given."""
    kw.setdefault("min_occurs", 1)
    return t.customize(sub_ns="", nillable=False, **kw)


def _opt(t: Any, **kw: Any) -> Any:
    return t.customize(sub_ns="", min_occurs=0, nillable=False, **kw)


def _many(t: Any) -> Any:
    return t.customize(sub_ns="", min_occurs=0, max_occurs="unbounded", nillable=False)


Status = Integer.customize(sub_ns="", min_occurs=1, nillable=False)
Message = _opt(Unicode)
ClientId = _in(Unicode)
Credentials = _in(Unicode)


class ContentConvertCount(ComplexModel):
    __namespace__ = NS
    _type_info = [("count", _in(Integer)), ("jobStatus", _in(Integer))]


class ContentConvertsPerState(ComplexModel):
    __namespace__ = NS
    _type_info = [("jobStatus", _in(Integer)), ("jobId", _in(Long))]


class ConversionTarget(ComplexModel):
    __namespace__ = NS
    _type_info = [
        ("application", _in(Unicode)),
        ("version", _in(Unicode)),
        ("doctypes", _in(Unicode)),  # comma-separated, e.g. "odp,ods,odt"
        ("formats", _in(Unicode)),  # comma-separated, e.g. "odf,pdf,png"
    ]


# ------------------------------------------------------------------ plumbing


def _status_of(exc: Exception) -> int | None:
    for cls, code in _STATUS:
        if isinstance(exc, cls):
            return code
    return None


def _utc(value: datetime | None) -> datetime | None:
    """xsd:dateTime without a zone is taken as UTC; with a zone it is converted to UTC."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _runtime(ctx: Any) -> Runtime:
    return ctx.app.convhub_runtime  # type: ignore[no-any-return]


def _authenticate(rt: Runtime, name: str | None, secret: str | None) -> ClientIdentity:
    with rt.db.read_session() as s:
        return rt.auth.client(s, name or "", secret or "", rt.now())


@dataclass(frozen=True)
class _Op:
    """One operation: its name and its request/response children. It gives @rpc its arguments (the
    `<name>Request` -> `<name>Response` element names, fixed) and `_call` the number of fields."""

    name: str
    ins: tuple[tuple[str, Any], ...]
    outs: tuple[tuple[str, Any], ...]

    @property
    def types(self) -> list[Any]:
        return [t for _, t in self.ins]

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(
            _in_message_name=f"{self.name}Request",
            _out_message_name=f"{self.name}Response",
            _in_arg_names={n: n for n, _ in self.ins},
            _returns=(Status, Message, *[t for _, t in self.outs]),
            _out_variable_names=("status", "statusMessage", *[n for n, _ in self.outs]),
        )


def _call(
    ctx: Any,
    op: _Op,
    name: str | None,
    secret: str | None,
    body: Callable[[Runtime, ClientIdentity], tuple[Any, ...]],
) -> tuple[Any, ...]:
    """Authenticate, run `body`, and shape the answer as (status, statusMessage, *fields).

    `body` returns the fields after status and statusMessage; on an error they are all absent.
    """
    rt = _runtime(ctx)
    absent = (None,) * len(op.outs)
    try:
        ident = _authenticate(rt, name, secret)
        fields = body(rt, ident)
        status, message = OK, None
    except ConvhubError as exc:
        status = _status_of(exc) or GENERAL_ERROR
        message = AUTH_FAILED if status == BAD_CLIENT_APPLICATION_CREDENTIALS else exc.message
        if isinstance(exc, Unavailable):
            message = "service temporarily unavailable; try again"
        fields = absent
    except Exception:  # noqa: BLE001 - logged here; the wire gets a fixed message, never a traceback
        log.exception("soap %s failed", op.name)
        status, message, fields = GENERAL_ERROR, "internal error", absent
    SOAP_STATUS.labels(op.name, str(status)).inc()
    return (status, message, *fields)


def _ins(*extra: tuple[str, Any]) -> tuple[tuple[str, Any], ...]:
    return (("clientApplicationId", ClientId), ("clientApplicationCredentials", Credentials), *extra)


# ------------------------------------------------------------------ operations (service calls)


def _counts(rt: Runtime, who: ClientIdentity) -> tuple[Any, ...]:
    with rt.db.read_session() as s:
        rows = jobs.counts(s, who.id)
    return ([ContentConvertCount(count=n, jobStatus=state) for state, n in rows],)


def _per_state(
    rt: Runtime, who: ClientIdentity, job_status: int | None, after: int | None, limit: int | None
) -> tuple[Any, ...]:
    if job_status is not None and job_status not in {int(s) for s in JobState}:
        raise BadArgument(f"jobStatus {job_status} is not one of {', '.join(str(int(s)) for s in JobState)}")
    if limit is not None and limit < 0:
        raise BadArgument("maxResults must not be negative")
    with rt.db.read_session() as s:
        rows = jobs.list_jobs(s, who.id, state=job_status, after_id=after, limit=limit)
    return ([ContentConvertsPerState(jobStatus=state, jobId=job_id) for job_id, state in rows],)


def _delete_one(rt: Runtime, who: ClientIdentity, job_id: int) -> tuple[Any, ...]:
    with rt.db.session() as s:
        jobs.delete_one(s, rt.now(), who.id, job_id)
    return ()


def _delete_range(rt: Runtime, who: ClientIdentity, start: datetime, end: datetime | None) -> tuple[Any, ...]:
    with rt.db.session() as s:
        done = jobs.delete_range(s, rt.now(), who.id, _utc(start), _utc(end))  # type: ignore[arg-type]
    return (done.deleted, done.skipped)


def _upload(
    rt: Runtime, who: ClientIdentity, parts: Iterable[Iterable[bytes] | None], filename: str
) -> tuple[Any, ...]:
    # spyne hands a ByteArray over as a list of byte chunks; `content` may repeat (see MAX_TEXT_NODE).
    chunks = [c for part in parts if part for c in part]
    total = sum(len(c) for c in chunks)
    if total > rt.settings.max_document_bytes:
        raise TooLarge(f"document is {total} bytes; the limit is {rt.settings.max_document_bytes}")
    with rt.db.session() as s:
        content = jobs.upload(
            s,
            rt.now(),
            client_id=who.id,
            filename=filename,
            parts=chunks,  # stored chunk by chunk: no joined copy of the whole document
            max_bytes=rt.settings.max_document_bytes,
        )
        return (content.identifier,)


def _convert(
    rt: Runtime,
    who: ClientIdentity,
    identifier: str,
    application: str,
    version: str,
    fmt: str | None,
    page_start: int | None,
    page_end: int | None,
    success_url: str | None,
    failure_url: str | None,
) -> tuple[Any, ...]:
    application, version, fmt = (
        (application or "").strip(),
        (version or "").strip(),
        (fmt or "").strip().lower(),
    )
    for url in (success_url, failure_url):
        if url:
            callbacks.check_url(url, allow_private=rt.settings.callback_allow_private)
    with rt.db.session() as s:
        try:
            content = jobs.find_content(s, who.id, identifier or "")
        except (NotFound, NotOwner):
            # Another client's upload is reported exactly like an unknown one.
            raise BadArgument(f"unknown contentIdentifier {identifier!r}") from None
        served = admin.served_targets(s)
        if not matching_workers(served, application, version, content.doctype, fmt):
            pair = [w for w in served if w.pair == (application, version)]
            if not pair:
                raise BadArgument(f"no registered factory serves {application!r} version {version!r}")
            if content.doctype not in pair[0].doctypes:
                raise BadArgument(f"{application} {version} does not convert {content.doctype} documents")
            raise BadArgument(f"{application} {version} does not produce format {fmt!r}")
        job = jobs.submit(
            s,
            rt.now(),
            rt.mirror,
            client_id=who.id,
            content=content,
            application=application,
            version=version,
            fmt=fmt,
            page_start=1 if page_start is None else page_start,
            page_end=0 if page_end is None else page_end,
            max_attempts=rt.settings.max_attempts,
            success_url=success_url or None,
            failure_url=failure_url or None,
        )
        return (job.id,)


def _status(rt: Runtime, who: ClientIdentity, job_id: int) -> tuple[Any, ...]:
    with rt.db.read_session() as s:
        j = jobs.owned_job(s, who.id, job_id)
        return (
            j.id,
            j.guid,
            j.state,
            j.application,
            j.version,
            j.format,
            j.submitted_at,
            j.updated_at,
            j.attempts,
            j.failure_reason,
        )


def _result(rt: Runtime, who: ClientIdentity, job_id: int) -> tuple[Any, ...]:
    with rt.db.read_session() as s:
        r = jobs.result_of(s, who.id, job_id)
        fmt, filename, data = r.format, r.filename, memoryview(read_blob(s, r.blob_id))
    parts = [[data[i : i + RESULT_PART_BYTES]] for i in range(0, len(data), RESULT_PART_BYTES)]
    return (fmt, filename, parts or [[b""]])


def _targets(rt: Runtime, who: ClientIdentity) -> tuple[Any, ...]:
    with rt.db.read_session() as s:
        served = admin.served_targets(s)
    return (
        [
            ConversionTarget(
                application=w.application,
                version=w.version,
                doctypes=",".join(sorted(w.doctypes)),
                formats=",".join(sorted(w.formats)),
            )
            for w in served
        ],
    )


# ------------------------------------------------------------------ the service

_COUNTS = _Op(
    "getContentConvertCounts", ins=_ins(), outs=(("contentConvertCount", _many(ContentConvertCount)),)
)
_PER_STATE = _Op(
    "getContentConvertsPerState",
    ins=_ins(("jobStatus", _opt(Integer)), ("afterJobId", _opt(Long)), ("maxResults", _opt(Integer))),
    outs=(("contentConvertsPerState", _many(ContentConvertsPerState)),),
)
_DELETE_ONE = _Op("deleteContentConversion", ins=_ins(("jobId", _in(Long))), outs=())
_DELETE_RANGE = _Op(
    "deleteContentConversions",
    ins=_ins(("deleteFrom", _in(DateTime)), ("deleteTo", _opt(DateTime))),
    outs=(("deletedCount", _opt(Integer)), ("skippedCount", _opt(Integer))),
)
_UPLOAD = _Op(
    OPERATION_UPLOAD,
    ins=_ins(("content", _in(ByteArray, max_occurs="unbounded")), ("filename", _in(Unicode))),
    outs=(("contentIdentifier", _opt(Unicode)),),
)
_CONVERT = _Op(
    "contentConvert",
    ins=_ins(
        ("contentIdentifier", _in(Unicode)),
        ("application", _in(Unicode)),
        ("version", _in(Unicode)),
        ("format", _opt(Unicode)),
        ("pageStart", _opt(Integer)),
        ("pageEnd", _opt(Integer)),
        ("successUrl", _opt(Unicode)),
        ("failureUrl", _opt(Unicode)),
    ),
    outs=(("jobId", _opt(Long)),),
)
_STATUS_OP = _Op(
    "getContentConvertStatus",
    ins=_ins(("jobId", _in(Long))),
    outs=(
        ("jobId", _opt(Long)),
        ("jobGuid", _opt(Unicode)),
        ("jobStatus", _opt(Integer)),
        ("application", _opt(Unicode)),
        ("version", _opt(Unicode)),
        ("format", _opt(Unicode)),
        ("submitted", _opt(DateTime)),
        ("updated", _opt(DateTime)),
        ("attempts", _opt(Integer)),
        ("failureReason", _opt(Unicode)),
    ),
)
OPERATION_RESULT = "getContentConvertResult"  # streamed on success: protocol/soap_streaming.py
_RESULT = _Op(
    OPERATION_RESULT,
    ins=_ins(("jobId", _in(Long))),
    outs=(("format", _opt(Unicode)), ("filename", _opt(Unicode)), ("content", _many(ByteArray))),
)
_TARGETS = _Op("getConversionTargets", ins=_ins(), outs=(("conversionTarget", _many(ConversionTarget)),))


class ContentService(ServiceBase):
    """All operations in one class: spyne makes each ServiceBase class its own wsdl:service."""

    @rpc(*_COUNTS.types, **_COUNTS.kwargs)
    def getContentConvertCounts(ctx, clientApplicationId, clientApplicationCredentials):  # noqa: N802, N805
        return _call(ctx, _COUNTS, clientApplicationId, clientApplicationCredentials, _counts)

    @rpc(*_PER_STATE.types, **_PER_STATE.kwargs)
    def getContentConvertsPerState(
        ctx, clientApplicationId, clientApplicationCredentials, jobStatus, afterJobId, maxResults
    ):  # noqa: N802, N803, N805
        return _call(
            ctx,
            _PER_STATE,
            clientApplicationId,
            clientApplicationCredentials,
            lambda rt, who: _per_state(rt, who, jobStatus, afterJobId, maxResults),
        )

    @rpc(*_DELETE_ONE.types, **_DELETE_ONE.kwargs)
    def deleteContentConversion(ctx, clientApplicationId, clientApplicationCredentials, jobId):  # noqa: N802, N803, N805
        return _call(
            ctx, _DELETE_ONE, clientApplicationId, clientApplicationCredentials, lambda rt, who: _delete_one(rt, who, jobId)
        )

    @rpc(*_DELETE_RANGE.types, **_DELETE_RANGE.kwargs)
    def deleteContentConversions(
        ctx, clientApplicationId, clientApplicationCredentials, deleteFrom, deleteTo
    ):  # noqa: N802, N803, N805
        return _call(
            ctx,
            _DELETE_RANGE,
            clientApplicationId,
            clientApplicationCredentials,
            lambda rt, who: _delete_range(rt, who, deleteFrom, deleteTo),
        )

    @rpc(*_UPLOAD.types, **_UPLOAD.kwargs)
    def contentUpload(ctx, clientApplicationId, clientApplicationCredentials, content, filename):  # noqa: N802, N803, N805
        return _call(
            ctx,
            _UPLOAD,
            clientApplicationId,
            clientApplicationCredentials,
            lambda rt, who: _upload(rt, who, content or [], filename),
        )

    @rpc(*_CONVERT.types, **_CONVERT.kwargs)
    def contentConvert(  # noqa: N802, N805
        ctx,
        clientApplicationId,  # noqa: N803
        clientApplicationCredentials,  # noqa: N803
        contentIdentifier,  # noqa: N803
        application,
        version,
        format,  # noqa: A002
        pageStart,  # noqa: N803
        pageEnd,  # noqa: N803
        successUrl,  # noqa: N803
        failureUrl,  # noqa: N803
    ):
        return _call(
            ctx,
            _CONVERT,
            clientApplicationId,
            clientApplicationCredentials,
            lambda rt, who: _convert(
                rt,
                who,
                contentIdentifier,
                application,
                version,
                format,
                pageStart,
                pageEnd,
                successUrl,
                failureUrl,
            ),
        )

    @rpc(*_STATUS_OP.types, **_STATUS_OP.kwargs)
    def getContentConvertStatus(ctx, clientApplicationId, clientApplicationCredentials, jobId):  # noqa: N802, N803, N805
        return _call(
            ctx, _STATUS_OP, clientApplicationId, clientApplicationCredentials, lambda rt, who: _status(rt, who, jobId)
        )

    @rpc(*_RESULT.types, **_RESULT.kwargs)
    def getContentConvertResult(ctx, clientApplicationId, clientApplicationCredentials, jobId):  # noqa: N802, N803, N805
        return _call(
            ctx, _RESULT, clientApplicationId, clientApplicationCredentials, lambda rt, who: _result(rt, who, jobId)
        )

    @rpc(*_TARGETS.types, **_TARGETS.kwargs)
    def getConversionTargets(ctx, clientApplicationId, clientApplicationCredentials):  # noqa: N802, N805
        return _call(ctx, _TARGETS, clientApplicationId, clientApplicationCredentials, _targets)


# ------------------------------------------------------------------ hardened XML in, WSGI out


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

    def create_in_document(self, ctx: Any, charset: str | None = None) -> None:
        super().create_in_document(ctx, charset)
        root = ctx.in_document[0]
        info = root.getroottree().docinfo
        if info.doctype or info.internalDTD is not None or info.externalDTD is not None:
            raise Fault("Client.DTDNotAllowed", "a SOAP message must not contain a document type declaration")


class UnqualifiedDocuments(InterfaceDocuments):
    """The WSDL's schema says elementFormDefault="unqualified", matching the seed's requests."""

    def __init__(self, interface: Any) -> None:
        super().__init__(interface)
        self.wsdl11 = Wsdl11(interface, element_form_default="unqualified")


def build_application(rt: Runtime) -> Application:
    app = Application(
        [ContentService],
        tns=NS,
        name="ContentService",
        in_protocol=HardenedSoap11(validator="soft"),
        out_protocol=Soap11(),
        documents_container=UnqualifiedDocuments,
    )
    app.convhub_runtime = rt  # read back by the operations through ctx.app
    return app


def fault_response(
    start_response: Callable[..., Any], code: str, message: str, exc_info: Any = None
) -> list[bytes]:
    from xml.sax.saxutils import escape

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


def mount(rt: Runtime, flask_app: Any, wsgi: Callable[..., Any]) -> DispatcherMiddleware:
    """Serve ContentService at /cds-controller/contentService (WSDL at ?wsdl) beside the Flask app."""
    from protocol.soap_streaming import StreamedResults, StreamedUploads  # they import this module's names

    streamed = StreamedUploads(StreamedResults(spyne_wsgi_app(rt), rt, RESULT_PART_BYTES), rt)
    return DispatcherMiddleware(wsgi, {PATH: size_limited(streamed, rt.settings.max_request_bytes)})


def spyne_wsgi_app(rt: Runtime) -> WsgiApplication:
    """The spyne WSGI application alone (every operation, every status, the WSDL)."""
    app = build_application(rt)
    spyne_wsgi = WsgiApplication(app, max_content_length=rt.settings.max_request_bytes)
    # The WSDL's soap:address comes from the configured public URL, not from whoever asks first.
    # (Built after WsgiApplication, which sets the binding's HTTP transport URI.)
    wsdl = app.interface.docs.wsdl11
    wsdl.build_interface_document(rt.settings.public_url.rstrip("/") + PATH)
    spyne_wsgi._wsdl = wsdl.get_interface_document()
    # spyne logs the whole request text of an unparsable message at ERROR: a 100 MB body or an
    # attacker's payload does not belong in the log.
    logging.getLogger("spyne.protocol.soap.soap11.invalid").setLevel(logging.CRITICAL)
    return spyne_wsgi
