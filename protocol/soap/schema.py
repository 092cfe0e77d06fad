"""The ContentService contract: namespace, status codes and their one table, wire types, and the
operation table (`OPERATIONS`) the service class is generated from.

Wire rules (docs/client-api.md): document/literal wrapped, `<op>Request` / `<op>Response` elements
in the ContentService namespace, unqualified children (qualified ones are accepted too: spyne's soft
validation matches children by local name). Every response is HTTP 200 with `<status>` first and a
`<statusMessage>` on errors; SOAP Faults are only for XML that is not a valid request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.domain.errors import (
    AuthenticationFailed,
    BadArgument,
    BadJobState,
    ClientQueueFull,
    ConvhubError,
    NotFound,
    NotOwner,
    Quarantined,
    TooLarge,
    Unavailable,
)

from .compat import Boolean, ByteArray, ComplexModel, DateTime, Integer, Long, Unicode

NS = "http://www.yospace.com/tundra/ContentService/"
PATH = "/cds-controller/contentService"

OK = 200
BAD_CLIENT_APPLICATION_CREDENTIALS = 501
BAD_JOB_ID = 508
BAD_JOB_STATE = 518
CLIENT_APPLICATION_DOES_NOT_OWN_JOB = 532
CLIENT_QUEUE_FULL = 540  # farm policy: answered with retryAfterSeconds
CONTENT_QUARANTINED = 541  # [ext] SPEC "Farm policy"
GENERAL_ERROR = 599

# Domain error -> status code: the one table. Subclasses are matched in order.
STATUS: tuple[tuple[type[ConvhubError], int], ...] = (
    (AuthenticationFailed, BAD_CLIENT_APPLICATION_CREDENTIALS),
    (NotFound, BAD_JOB_ID),
    (BadJobState, BAD_JOB_STATE),
    (NotOwner, CLIENT_APPLICATION_DOES_NOT_OWN_JOB),
    (ClientQueueFull, CLIENT_QUEUE_FULL),
    (Quarantined, CONTENT_QUARANTINED),
    (BadArgument, GENERAL_ERROR),  # NotServed included
    (TooLarge, GENERAL_ERROR),
    (Unavailable, GENERAL_ERROR),
)


def status_of(exc: Exception) -> int | None:
    for cls, code in STATUS:
        if isinstance(exc, cls):
            return code
    return None


# Largest base64 text one element can carry: libxml2's text-node limit without huge_tree, which we
# keep off. contentUpload therefore accepts the document as one or more `content` parts.
MAX_TEXT_NODE = 10_000_000
# The one statusMessage of 501: unknown client and wrong credentials read the same.
AUTH_FAILED = "authentication failed"
OPERATION_UPLOAD = "contentUpload"  # streamed on success: protocol/soap/streaming.py
OPERATION_RESULT = "getContentConvertResult"  # streamed on success: protocol/soap/streaming.py
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


# ------------------------------------------------------------------ the operation table


@dataclass(frozen=True)
class Op:
    """One operation: its name and its request/response children. It gives @rpc its arguments (the
    `<name>Request` -> `<name>Response` element names, fixed); the answer is
    (status, statusMessage, *outs)."""

    name: str
    ins: tuple[tuple[str, Any], ...]
    outs: tuple[tuple[str, Any], ...]

    @property
    def types(self) -> list[Any]:
        return [t for _, t in self.ins]

    @property
    def arg_names(self) -> tuple[str, ...]:
        return tuple(n for n, _ in self.ins)

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(
            _in_message_name=f"{self.name}Request",
            _out_message_name=f"{self.name}Response",
            _in_arg_names={n: n for n, _ in self.ins},
            _returns=(Status, Message, *[t for _, t in self.outs]),
            _out_variable_names=("status", "statusMessage", *[n for n, _ in self.outs]),
        )


# [ext] An optional client request id, the last child of contentUpload and contentConvert: a retry
# with the same id answers the first call's result and creates nothing (app/services/request_ids.py).
REQUEST_ID = ("requestId", _opt(Unicode))


def _ins(*extra: tuple[str, Any]) -> tuple[tuple[str, Any], ...]:
    """Every request opens with the client's credentials."""
    return (("clientApplicationId", ClientId), ("clientApplicationCredentials", Credentials), *extra)


# In WSDL order.
OPERATIONS: tuple[Op, ...] = (
    Op("getContentConvertCounts", ins=_ins(), outs=(("contentConvertCount", _many(ContentConvertCount)),)),
    Op(
        "getContentConvertsPerState",
        ins=_ins(("jobStatus", _opt(Integer)), ("afterJobId", _opt(Long)), ("maxResults", _opt(Integer))),
        outs=(("contentConvertsPerState", _many(ContentConvertsPerState)),),
    ),
    Op("deleteContentConversion", ins=_ins(("jobId", _in(Long))), outs=()),
    Op(
        "deleteContentConversions",
        ins=_ins(("deleteFrom", _in(DateTime)), ("deleteTo", _opt(DateTime))),
        outs=(("deletedCount", _opt(Integer)), ("skippedCount", _opt(Integer))),
    ),
    Op(
        OPERATION_UPLOAD,
        ins=_ins(("content", _in(ByteArray, max_occurs="unbounded")), ("filename", _in(Unicode)), REQUEST_ID),
        outs=(("contentIdentifier", _opt(Unicode)),),
    ),
    Op(
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
            ("priority", _opt(Integer)),  # farm policy: 0-9, default 5
            ("noCache", _opt(Boolean)),  # [ext] result cache opt-out
            REQUEST_ID,
        ),
        # retryAfterSeconds: only on 540 CLIENT_QUEUE_FULL (absent otherwise, so the seed's answer is unchanged)
        outs=(("jobId", _opt(Long)), ("retryAfterSeconds", _opt(Integer))),
    ),
    Op(
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
            ("cachedFrom", _opt(Long)),  # [ext] the jobId whose result this job shares
        ),
    ),
    Op(
        OPERATION_RESULT,
        ins=_ins(("jobId", _in(Long))),
        outs=(("format", _opt(Unicode)), ("filename", _opt(Unicode)), ("content", _many(ByteArray))),
    ),
    Op("getConversionTargets", ins=_ins(), outs=(("conversionTarget", _many(ConversionTarget)),)),
    Op("cancelContentConversion", ins=_ins(("jobId", _in(Long))), outs=()),  # [ext] SPEC "Farm policy"
)
