"""The ContentService operations: wire arguments -> one service call -> status code.

`ContentService` is generated from `schema.OPERATIONS`: each @rpc method authenticates, runs its
body below and shapes the answer through `_call`. Domain errors map to status codes in one table
(`schema.STATUS`); anything unexpected is logged and answered 599 without detail.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from app.domain.errors import ConvhubError, Throttled, Unavailable
from app.metrics import SOAP_STATUS
from app.services import admin, client_views, comparison, documents, request_ids, submission
from app.services.auth import ClientIdentity
from app.services.runtime import Runtime
from protocol.source import caller_of

from . import schema
from .compat import ServiceBase, rpc
from .hardening import one_line
from .schema import (
    AUTH_FAILED,
    BAD_CLIENT_APPLICATION_CREDENTIALS,
    GENERAL_ERROR,
    OK,
    RESULT_PART_BYTES,
    ComparisonPageScore,
    ComparisonRendering,
    ContentConvertCount,
    ContentConvertsPerState,
    ConversionTarget,
    Op,
)

log = logging.getLogger("convhub.soap")

Body = Callable[..., tuple[Any, ...]]  # (rt, who, *request fields after the credentials) -> outs


# ------------------------------------------------------------------ plumbing


def _utc(value: datetime | None) -> datetime | None:
    """xsd:dateTime without a zone is taken as UTC; with a zone it is converted to UTC."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _runtime(ctx: Any) -> Runtime:
    return ctx.app.convhub_runtime  # type: ignore[no-any-return]


def _authenticate(ctx: Any, rt: Runtime, name: str | None, secret: str | None) -> ClientIdentity:
    environ = getattr(getattr(ctx, "transport", None), "req_env", None)
    caller = caller_of(environ, rt.settings.trusted_proxies) if isinstance(environ, dict) else None
    with rt.db.read_session() as s:
        return rt.auth.client(s, name or "", secret or "", rt.now(), caller)


def _call(ctx: Any, op: Op, name: str | None, secret: str | None, body: Callable[[Runtime, ClientIdentity], tuple[Any, ...]]) -> tuple[Any, ...]:
    """Authenticate, run `body`, and shape the answer as (status, statusMessage, *fields).

    `body` returns the fields after status and statusMessage; on an error they are all absent.
    """
    rt = _runtime(ctx)
    absent = (None,) * len(op.outs)
    try:
        ident = _authenticate(ctx, rt, name, secret)
        fields = body(rt, ident)
        status, message = OK, None
    except ConvhubError as exc:
        status = schema.status_of(exc) or GENERAL_ERROR
        # A throttled caller is told why and for how long; any other refusal says only "failed".
        throttled = isinstance(exc, Throttled)
        message = AUTH_FAILED if status == BAD_CLIENT_APPLICATION_CREDENTIALS and not throttled else exc.message
        if isinstance(exc, Unavailable):
            message = "service temporarily unavailable; try again"
        # An error answer carries only the fields the error names (540's retryAfterSeconds).
        fields = tuple(exc.fields.get(name) for name, _ in op.outs) if exc.fields else absent
    except Exception:  # logged here; the wire gets a fixed message, never a traceback
        log.exception("soap %s failed", op.name)
        status, message, fields = GENERAL_ERROR, "internal error", absent
    SOAP_STATUS.labels(op.name, str(status)).inc()
    return (status, one_line(message), *fields)



# ------------------------------------------------------------------ operations (service calls)


def _counts(rt: Runtime, who: ClientIdentity) -> tuple[Any, ...]:
    with rt.db.read_session() as s:
        rows = client_views.counts(s, who.id)
    return ([ContentConvertCount(count=n, jobStatus=state) for state, n in rows],)


def _per_state(
    rt: Runtime, who: ClientIdentity, job_status: int | None, after: int | None, limit: int | None
) -> tuple[Any, ...]:
    with rt.db.read_session() as s:
        rows = client_views.list_jobs(s, who.id, state=job_status, after_id=after, limit=limit)
    return ([ContentConvertsPerState(jobStatus=state, jobId=job_id) for job_id, state in rows],)


def _delete_one(rt: Runtime, who: ClientIdentity, job_id: int) -> tuple[Any, ...]:
    with rt.db.session() as s:
        client_views.delete_one(s, rt.now(), who.id, job_id, mirror=rt.mirror)
    return ()


def _cancel(rt: Runtime, who: ClientIdentity, job_id: int) -> tuple[Any, ...]:
    with rt.db.session() as s:
        client_views.cancel_one(s, rt.now(), who.id, job_id, mirror=rt.mirror)
    return ()


def _delete_range(rt: Runtime, who: ClientIdentity, start: datetime, end: datetime | None) -> tuple[Any, ...]:
    with rt.db.session() as s:
        done = client_views.delete_range(s, rt.now(), who.id, _utc(start), _utc(end), mirror=rt.mirror)  # type: ignore[arg-type]
    return (done.deleted, done.skipped)


def _upload(
    rt: Runtime, who: ClientIdentity, parts: Iterable[Iterable[bytes] | None] | None, filename: str, request_id: str | None = None
) -> tuple[Any, ...]:
    # spyne hands a ByteArray over as a list of byte chunks; `content` may repeat (see MAX_TEXT_NODE).
    chunks = [c for part in parts or [] if part for c in part]

    def create(s: Any) -> str:
        return submission.upload(
            s,
            rt.now(),
            client_id=who.id,
            filename=filename,
            parts=chunks,  # stored chunk by chunk: no joined copy of the whole document
            max_bytes=rt.settings.max_document_bytes,
        ).identifier

    return (_once(rt, who, schema.OPERATION_UPLOAD, request_id, lambda: upload_fingerprint(filename, chunks), create),)


def upload_fingerprint(filename: str | None, chunks: Iterable[bytes]) -> str:
    """The requestId fingerprint of an upload: its filename and the sha256 of its bytes (the
    streamed path computes the same)."""
    digest = hashlib.sha256()
    for c in chunks:
        digest.update(c)
    return request_ids.fingerprint(schema.OPERATION_UPLOAD, filename or "", digest.hexdigest())


def _once(rt: Runtime, who: ClientIdentity, op: str, request_id: str | None, fingerprint: Callable[[], str], create: Callable[[Any], object]) -> str:
    return request_ids.once(
        rt.db, rt.now(), client_id=who.id, operation=op, request_id=request_ids.clean(request_id),
        fingerprint=fingerprint, create=create,
    )


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
    priority: int | None = None,
    no_cache: bool | None = None,
    request_id: str | None = None,
) -> tuple[Any, ...]:
    def create(s: Any) -> int:
        job = submission.convert(
            s,
            rt.now(),
            rt.mirror,
            client_id=who.id,
            identifier=identifier,
            application=application or "",
            version=version or "",
            fmt=fmt or "",
            page_start=1 if page_start is None else page_start,
            page_end=0 if page_end is None else page_end,
            max_attempts=rt.settings.max_attempts,
            success_url=success_url or None,
            failure_url=failure_url or None,
            allow_private_callbacks=rt.settings.callback_allow_private,
            priority=priority,
            default_max_queued=rt.settings.client_max_queued,
            no_cache=bool(no_cache),
            notifier=rt.notifier,
            share_across_clients=rt.settings.share_results_across_clients,
        )
        return job.id

    fields = (identifier, application, version, fmt, page_start, page_end, success_url, failure_url, priority, no_cache)
    fingerprint = lambda: request_ids.fingerprint("contentConvert", *fields)  # noqa: E731
    return (int(_once(rt, who, "contentConvert", request_id, fingerprint, create)), None)


def _status(rt: Runtime, who: ClientIdentity, job_id: int) -> tuple[Any, ...]:
    with rt.db.read_session() as s:
        j = client_views.status_of(s, who.id, job_id)
    return (
        j.id, j.guid, j.state, j.application, j.version, j.format, j.submitted_at, j.updated_at, j.attempts, j.failure_reason,
        j.cached_from,
    )


def _result(rt: Runtime, who: ClientIdentity, job_id: int) -> tuple[Any, ...]:
    with rt.db.read_session() as s:
        r = client_views.result_of(s, who.id, job_id)
        data = memoryview(documents.read(s, r.blob_id))
    parts = [[data[i : i + RESULT_PART_BYTES]] for i in range(0, len(data), RESULT_PART_BYTES)]
    return (r.format, r.filename, parts or [[b""]])


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


def _convert_all(
    rt: Runtime, who: ClientIdentity, identifier: str, fmt: str | None, page_start: int | None, page_end: int | None
) -> tuple[Any, ...]:
    with rt.db.session() as s:
        done = comparison.convert_all(
            s, rt.now(), rt.mirror, client_id=who.id, identifier=identifier, fmt=fmt or "pdf",
            page_start=1 if page_start is None else page_start, page_end=0 if page_end is None else page_end,
            max_attempts=rt.settings.max_attempts, notifier=rt.notifier,
            share_across_clients=rt.settings.share_results_across_clients,
        )
    return (done.comparison_id, list(done.job_ids))


def _comparison(rt: Runtime, who: ClientIdentity, comparison_id: int, reference: int | None) -> tuple[Any, ...]:
    with rt.db.read_session() as s:
        v = comparison.view(s, comparison_id, client_id=who.id, reference_job_id=reference)
    renderings = [
        ComparisonRendering(
            jobId=r.job_id, application=r.application, version=r.version, jobStatus=r.job_status, pageCount=r.page_count,
            note=r.note, page=[ComparisonPageScore(page=p.page, score=p.score, missing=p.missing) for p in r.pages],
        )
        for r in v.renderings
    ]
    return (v.comparison_id, v.state, v.reference_job_id, v.page_counts_differ, v.error, renderings)


BODIES: dict[str, Body] = {
    "getContentConvertCounts": _counts,
    "getContentConvertsPerState": _per_state,
    "deleteContentConversion": _delete_one,
    "deleteContentConversions": _delete_range,
    schema.OPERATION_UPLOAD: _upload,
    "contentConvert": _convert,
    "getContentConvertStatus": _status,
    schema.OPERATION_RESULT: _result,
    "getConversionTargets": _targets,
    "cancelContentConversion": _cancel,
    "contentConvertAll": _convert_all,
    "getContentComparison": _comparison,
}


# ------------------------------------------------------------------ the service


def _rpc_method(op: Op, body: Body) -> Any:
    """The @rpc method of one operation: (ctx, credentials, *fields) -> `_call` of its body."""

    def method(ctx: Any, client_id: str | None, secret: str | None, *fields: Any) -> tuple[Any, ...]:
        return _call(ctx, op, client_id, secret, lambda rt, who: body(rt, who, *fields))

    method.__name__ = method.__qualname__ = op.name
    return rpc(*op.types, _args=op.arg_names, **op.kwargs)(method)


# All operations in one class: spyne makes each ServiceBase class its own wsdl:service.
ContentService = type(
    "ContentService",
    (ServiceBase,),
    {
        "__doc__": "The Tundra ContentService: every operation of schema.OPERATIONS, in table order.",
        "__module__": __name__,
        **{op.name: _rpc_method(op, BODIES[op.name]) for op in schema.OPERATIONS},
    },
)
