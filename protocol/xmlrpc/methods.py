"""The XML-RPC methods: each validates its wire arguments and calls one service.

The method table below is also what ``system.listMethods`` / ``methodHelp`` / ``methodSignature``
report, so documentation and dispatch cannot drift apart.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from app import metrics
from app.domain.errors import AuthenticationFailed, BadArgument, LeaseNotHeld
from app.services import documents, leases
from app.services import poll as poll_service
from app.services.auth import FactoryIdentity
from app.services.runtime import Runtime

from . import wire
from .faults import fault_for

MAX_MULTICALL = 100


@dataclass(frozen=True)
class Context:
    rt: Runtime
    factory: FactoryIdentity


@dataclass(frozen=True)
class Arg:
    name: str
    kind: str  # "string" | "document" | "array" | "boolean"
    optional: bool = False
    max_chars: int = 1024


@dataclass(frozen=True)
class Method:
    name: str
    args: tuple[Arg, ...]
    returns: str
    help: str
    fn: Callable[..., Any]

    def usage(self) -> str:
        req = [a.name for a in self.args if not a.optional]
        opt = [a.name for a in self.args if a.optional]
        return f"{self.name}({', '.join(req)}{''.join(f'[, {o}]' for o in opt)})"

    def signatures(self) -> list[list[str]]:
        wire_type = {"string": "string", "document": "string", "array": "array", "boolean": "boolean"}
        required = [wire_type[a.kind] for a in self.args if not a.optional]
        sigs = [[self.returns, *required]]
        for a in self.args:
            if a.optional:
                sigs.append([*sigs[-1], wire_type[a.kind]])
        return sigs


# ----------------------------------------------------------------------------- argument checks


def _type_name(v: object) -> str:
    if isinstance(v, wire.Base64Value):
        return "base64"
    if isinstance(v, wire.LargeText):
        return "string"
    return {bool: "boolean", int: "int", float: "double", str: "string", list: "array", dict: "struct"}.get(
        type(v), "dateTime" if hasattr(v, "tzinfo") else "nil" if v is None else type(v).__name__
    )


def check_args(m: Method, params: list[Any]) -> list[Any]:
    n_req = sum(1 for a in m.args if not a.optional)
    if not n_req <= len(params) <= len(m.args):
        count = str(n_req) if n_req == len(m.args) else f"{n_req} to {len(m.args)}"
        raise BadArgument(f"{m.usage()} takes {count} argument{'s' if len(m.args) > 1 else ''}, got {len(params)}")
    out: list[Any] = []
    for a, v in zip(m.args, params, strict=False):
        if a.optional and v is None:  # <nil/> for an optional argument = not given
            out.append(None)
        elif a.kind == "string":
            if isinstance(v, wire.LargeText) or (isinstance(v, str) and len(v) > a.max_chars):
                raise BadArgument(f"argument {a.name} of {m.name} is longer than {a.max_chars} characters")
            if not isinstance(v, str):
                raise BadArgument(f"argument {a.name} of {m.name} must be a string, got {_type_name(v)}")
            out.append(v)
        elif a.kind == "document":
            if isinstance(v, wire.Base64Value):
                out.append(v.text)
            elif isinstance(v, str | wire.LargeText):
                out.append(v)
            else:
                raise BadArgument(f"argument {a.name} of {m.name} must be base64 text (string or base64), got {_type_name(v)}")
        elif a.kind == "boolean":
            if not isinstance(v, bool):
                raise BadArgument(f"argument {a.name} of {m.name} must be a boolean, got {_type_name(v)}")
            out.append(v)
        elif a.kind == "array":
            if not isinstance(v, list):
                raise BadArgument(f"argument {a.name} of {m.name} must be an array, got {_type_name(v)}")
            out.append(v)
    return out


def _own_name(ctx: Context, factory_name: str) -> str:
    if factory_name != ctx.factory.name:
        raise AuthenticationFailed("factory_name does not match the authenticated factory")
    return factory_name


# ----------------------------------------------------------------------------- jobs.*


def _reclaimer(rt: Runtime) -> poll_service.LazyReclaimer:
    """One lazy reclaimer per runtime (per web process), paced by the beat interval."""
    found = rt.extras.get("lazy_reclaimer")
    if not isinstance(found, poll_service.LazyReclaimer):
        found = rt.extras.setdefault(
            "lazy_reclaimer", poll_service.LazyReclaimer(timedelta(seconds=rt.settings.reclaim_interval_seconds))
        )
    assert isinstance(found, poll_service.LazyReclaimer)
    return found


def jobs_poll(ctx: Context, factory_name: str) -> dict[str, Any]:
    rt = ctx.rt
    _own_name(ctx, factory_name)
    t0 = time.perf_counter()
    try:
        claimed = poll_service.poll(
            rt.db, rt.now(), rt.policy, rt.mirror, ctx.factory, reclaim=(_reclaimer(rt), rt.notifier)
        )
    except Exception:
        metrics.POLLS.labels(outcome="error").inc()
        raise
    finally:
        metrics.POLL_SECONDS.observe(time.perf_counter() - t0)
    if claimed is None:
        metrics.POLLS.labels(outcome="empty").inc()
        return {}
    metrics.POLLS.labels(outcome="job").inc()
    metrics.LEASES_GRANTED.labels(application=claimed.application, version=claimed.version).inc()
    blob_id, in_hand = claimed.blob_id, claimed.document
    # The claim read a one-chunk document already; a larger one is streamed chunk by chunk.
    chunks = (lambda: iter((in_hand,))) if in_hand is not None else (lambda: documents.stream(rt.db, blob_id))
    return {
        # The seed's fields, names and types, in the seed's order.
        "job": claimed.guid,
        "application": claimed.application,
        "version": claimed.version,
        "pageStart": claimed.page_start,
        "pageEnd": claimed.page_end,
        "format": claimed.format,
        "filename": claimed.filename,
        "doctype": claimed.doctype,
        "document": wire.StreamedBase64(claimed.size, chunks),
        # Extensions.
        "lease": claimed.lease_token,
        "leaseExpires": claimed.lease_expires,
        "attempt": claimed.attempt,
    }


def jobs_finish(ctx: Context, factory_name: str, job: str, fmt: str, document: Any, lease: str | None = None) -> str:
    rt = ctx.rt
    owner = _own_name(ctx, factory_name)
    max_bytes = rt.settings.max_document_bytes
    t0 = time.perf_counter()
    try:
        # One round trip on PostgreSQL for a one-chunk result (leases.finish_job). The document is
        # decoded afresh when a request that met a dead pooled connection runs once more.
        done = leases.finish_job(
            rt.db, rt.now(), rt.notifier, guid=job, owner=owner, token=lease, fmt=fmt,
            document=lambda: wire.decode_base64(document, max_bytes), max_bytes=max_bytes,
        )
    finally:
        metrics.FINISH_SECONDS.observe(time.perf_counter() - t0)
    metrics.FINISHED.labels(application=done.application, version=done.version).inc()
    return done.result_guid


def jobs_extend(ctx: Context, factory_name: str, job: str, lease: str | None = None) -> dict[str, Any]:
    rt = ctx.rt
    owner = _own_name(ctx, factory_name)
    with rt.db.session() as s:
        ext = leases.extend(s, rt.now(), rt.policy, guid=job, owner=owner, token=lease, notifier=rt.notifier, mirror=rt.mirror)
    return {"leaseExpires": ext.lease_expires, "cancelled": ext.cancelled}


def jobs_fail(
    ctx: Context, factory_name: str, job: str, reason: str, lease: str | None = None, permanent: bool | None = None
) -> dict[str, Any]:
    rt = ctx.rt
    owner = _own_name(ctx, factory_name)
    with rt.db.session() as s:
        state = leases.fail(
            s, rt.now(), rt.policy, rt.notifier, rt.mirror, guid=job, owner=owner, token=lease, reason=reason, permanent=bool(permanent)
        )
    metrics.FAILED_ATTEMPTS.inc()
    return {"jobStatus": int(state)}


# ----------------------------------------------------------------------------- system.*


def _method(name: str) -> Method:
    m = METHODS.get(name)
    if m is None:
        raise BadArgument(f"unknown method {name[:80]!r}")
    return m


def list_methods(ctx: Context) -> list[str]:
    return sorted(METHODS)


def method_help(ctx: Context, name: str) -> str:
    m = _method(name)
    return f"{m.usage()} -> {m.returns}: {m.help}"


def method_signature(ctx: Context, name: str) -> list[list[str]]:
    return _method(name).signatures()


def multicall(ctx: Context, calls: list[Any]) -> list[Any]:
    if len(calls) > MAX_MULTICALL:
        raise BadArgument(f"system.multicall takes at most {MAX_MULTICALL} calls, got {len(calls)}")
    out: list[Any] = []
    for call in calls:
        try:
            if not isinstance(call, dict) or not isinstance(call.get("methodName"), str) or not isinstance(call.get("params", []), list):
                raise BadArgument("each call must be a struct {methodName: string, params: array}")
            if call["methodName"] == "system.multicall":
                raise BadArgument("system.multicall cannot be nested")
            out.append([dispatch(ctx, call["methodName"], call.get("params", []))])
        except Exception as exc:  # each call gets its own fault, as the convention says
            code, text = record_fault(exc)
            out.append({"faultCode": code, "faultString": text})
    return out


def record_fault(exc: BaseException) -> tuple[int, str]:
    """Map an exception through the fault table and count it."""
    code, text = fault_for(exc)
    metrics.RPC_FAULTS.labels(code=str(code)).inc()
    if isinstance(exc, LeaseNotHeld):
        metrics.LEASES_FENCED.inc()
    return code, text


def dispatch(ctx: Context, name: str, params: list[Any]) -> Any:
    m = _method(name)
    return m.fn(ctx, *check_args(m, params))


_NAME = Arg("factory_name", "string")
_JOB = Arg("job", "string")
_LEASE = Arg("lease", "string", optional=True)

METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("jobs.poll", (_NAME,), "struct", "Lock the oldest job one of your workers can render and return it "
               "(empty struct when there is none). The lease lasts leaseExpires; finish, extend or fail it before then.", jobs_poll),
        Method("jobs.finish", (_NAME, _JOB, Arg("format", "string"), Arg("document", "document"), _LEASE), "string",
               "Upload the converted document (base64 string or base64) and complete the job; returns the result GUID.",
               jobs_finish),
        Method("jobs.extend", (_NAME, _JOB, _LEASE), "struct", "Renew the lease (capped per attempt) and mark the job "
               "PROCESSING; returns {leaseExpires, cancelled}. cancelled=true: stop; the cap is reached (no further renewal) "
               "or the client cancelled the job (it has ended; finish and fail are refused).", jobs_extend),
        Method("jobs.fail", (_NAME, _JOB, Arg("reason", "string", max_chars=wire.SPILL_AT), _LEASE, Arg("permanent", "boolean", optional=True)),
               "struct", "Give the job back without a result: counts one attempt; returns {jobStatus} (0 = queued again, "
               "4 = failed). permanent=true: the document itself cannot be converted, the job fails at once.",
               jobs_fail),
        Method("system.listMethods", (), "array", "The names of the methods this server offers.", list_methods),
        Method("system.methodHelp", (Arg("method_name", "string"),), "string", "Help text for a method.", method_help),
        Method("system.methodSignature", (Arg("method_name", "string"),), "array",
               "The method's signatures: arrays of [return type, argument types...].", method_signature),
        Method("system.multicall", (Arg("calls", "array"),), "array", "Run several calls given as "
               "{methodName, params} structs; each result is [value] or a fault struct.", multicall),
    )
}
