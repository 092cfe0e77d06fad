"""Operations side of the web tier: `/metrics`, the `/ops` page, one log line per HTTP request.

`mount(rt, flask_app, wsgi)` is called by `create_app` after the protocol adapters. It registers
the routes on Flask and wraps the WSGI stack in a small request-log middleware, outermost, so that
SOAP (mounted beside Flask) is logged and counted exactly like the Flask routes.

Actors: a protocol adapter that knows who is calling sets `flask.g.convhub_actor` (Flask routes)
or `environ["convhub.actor"]` (plain WSGI apps) to e.g. "factory:lo-1" or "client:petshow".
"""

from __future__ import annotations

import base64
import hmac
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import Any

from flask import Blueprint, Flask, Response, g, jsonify, redirect, render_template, request, url_for

from app.domain.errors import NotFound, Throttled
from app.domain.states import IN_FLIGHT, JobState
from app.services import admin, comparison, ops_views, quarantine
from app.services.runtime import Runtime
from app.web import comparison_view, metrics_view, trends_view
from protocol.source import caller_of

log = logging.getLogger("convhub.web.ops")
http_log = logging.getLogger("convhub.http")

ACTOR_ENVIRON_KEY = "convhub.actor"
LIST_LIMIT = 25
DEFAULT_REFRESH_SECONDS = 5
# Frequent machine traffic logged at DEBUG, so INFO logs show the real work.
QUIET_PATHS = frozenset({"/healthz", "/metrics"})


def mount(rt: Runtime, flask_app: Flask, wsgi: Callable[..., Any]) -> Callable[..., Any]:
    registry = metrics_view.build_registry(rt)

    @flask_app.get("/metrics")
    def metrics():  # type: ignore[no-untyped-def]
        return Response(metrics_view.render(registry), mimetype=None, content_type=metrics_view.CONTENT_TYPE)

    flask_app.register_blueprint(_ops_blueprint(rt))

    @flask_app.after_request
    def _actor_to_environ(resp: Response) -> Response:
        actor = g.get("convhub_actor")
        if actor:
            request.environ[ACTOR_ENVIRON_KEY] = str(actor)
        return resp

    return RequestLog(wsgi)


# ---------------------------------------------------------------- request log


class RequestLog:
    """WSGI middleware: one log line and one counter increment per HTTP request.

    The duration runs until the response body has been sent (closed), so streamed documents count.
    """

    def __init__(self, app: Callable[..., Any]) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        started = time.perf_counter()
        seen: dict[str, str] = {}

        def _start(status: str, headers: list[tuple[str, str]], exc_info: Any = None):  # type: ignore[no-untyped-def]
            seen["status"] = status.split(" ", 1)[0]
            return start_response(status, headers, exc_info) if exc_info else start_response(status, headers)

        try:
            body = self.app(environ, _start)
        except Exception:
            seen.setdefault("status", "500")
            self._log(environ, seen, started)
            raise
        return _ClosingIterator(body, lambda: self._log(environ, seen, started))

    @staticmethod
    def _log(environ: dict[str, Any], seen: dict[str, str], started: float) -> None:
        elapsed = time.perf_counter() - started
        method = environ.get("REQUEST_METHOD", "-")
        path = (environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")) or "/"
        status = seen.get("status", "000")
        actor = environ.get(ACTOR_ENVIRON_KEY) or "-"
        endpoint = metrics_view.endpoint_of(path)
        try:
            metrics_view.HTTP_REQUESTS.labels(
                endpoint, method if method in _METHODS else "other", status
            ).inc()
            metrics_view.HTTP_SECONDS.labels(endpoint).observe(elapsed)
        except Exception:  # metrics must never break a request
            log.debug("http metrics failed", exc_info=True)
        level = logging.DEBUG if path in QUIET_PATHS and status.startswith("2") else logging.INFO
        if not http_log.isEnabledFor(level):
            return
        http_log.log(
            level,
            "%s %s %s %.1fms actor=%s",
            method,
            path,
            status,
            elapsed * 1000,
            actor,
            extra={
                "http_method": method,
                "http_path": path,
                "http_status": int(status) if status.isdigit() else status,
                "duration_ms": round(elapsed * 1000, 2),
                "actor": actor,
                "remote_addr": environ.get("REMOTE_ADDR", "-"),
            },
        )


_METHODS = frozenset({"GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH"})


class _ClosingIterator:
    """Pass the body through; run `on_close` exactly once: when the body is used up or closed."""

    def __init__(self, body: Iterable[bytes], on_close: Callable[[], None]) -> None:
        self._body = body
        self._it: Iterator[bytes] = iter(body)
        self._on_close: Callable[[], None] | None = on_close

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        try:
            return next(self._it)
        except StopIteration:
            self._done()
            raise

    def _done(self) -> None:
        cb, self._on_close = self._on_close, None
        if cb is not None:
            cb()

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            self._done()


# ---------------------------------------------------------------- operator authentication


def _unauthorized(message: str, status: int = 401) -> Response:
    resp = Response(message + "\n", status=status, mimetype="text/plain")
    if status == 401:
        resp.headers["WWW-Authenticate"] = 'Basic realm="convhub operator", charset="UTF-8"'
    return resp


def _check_operator(rt: Runtime) -> Response | None:
    """None if the request carries the operator's credentials, else the response to send."""
    expected_user = rt.settings.operator_user
    expected_password = rt.settings.operator_password
    if not expected_password:
        return _unauthorized(
            "The ops page is disabled: set CONVHUB_OPERATOR_PASSWORD (and optionally CONVHUB_OPERATOR_USER) "
            "to enable it.",
            status=403,
        )
    header = request.headers.get("Authorization", "")
    user = password = ""
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "basic" and value:
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            decoded = ""
        user, _, password = decoded.partition(":")
    if not header:
        return _unauthorized("Operator credentials required.")  # a browser's first try: not a failure
    caller = caller_of(request.environ, rt.settings.trusted_proxies)
    now = rt.now()
    try:
        rt.auth.check_throttle("operator", user, caller, now)
    except Throttled as exc:
        seconds = str(exc.fields.get("retryAfterSeconds", 1))
        resp = Response(f"Too many failed sign-ins from this address; retry in {seconds} s.\n", status=429, mimetype="text/plain")
        resp.headers["Retry-After"] = seconds
        return resp
    # Both compared in constant time, and both always compared, so timing tells nothing.
    ok_user = hmac.compare_digest(user.encode("utf-8"), expected_user.encode("utf-8"))
    ok_password = hmac.compare_digest(password.encode("utf-8"), expected_password.encode("utf-8"))
    rt.auth.record("operator", user, caller, now, ok=ok_user and ok_password)
    if ok_user and ok_password:
        g.convhub_actor = f"operator:{expected_user}"
        return None
    return _unauthorized("Operator credentials required.")


# ---------------------------------------------------------------- ops page


def _ops_blueprint(rt: Runtime) -> Blueprint:
    bp = Blueprint(
        "ops", __name__, template_folder="templates", static_folder="static", static_url_path="/ops/static"
    )

    @bp.app_template_filter("duration")
    def _duration(seconds: object) -> str:
        return human_duration(int(seconds or 0))  # type: ignore[call-overload]

    @bp.before_request
    def _auth():  # type: ignore[no-untyped-def]
        return _check_operator(rt)

    @bp.after_request
    def _headers(resp: Response) -> Response:
        # Server-rendered, no third-party anything: scripts only from here, never framed, not cached.
        resp.headers["Content-Security-Policy"] = (
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
            "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
        )
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers["Referrer-Policy"] = "no-referrer"
        resp.headers.setdefault("Cache-Control", "no-store")
        return resp

    @bp.get("/ops")
    def index():  # type: ignore[no-untyped-def]
        ref = request.args.get("job", "").strip()
        if ref:
            return redirect(url_for("ops.job", ref=ref))
        data = _snapshot(rt)
        return render_template(
            "ops/index.html", data=data, refresh_ms=_refresh_ms(), trends=trends.for_page(request), csrf=csrf_token(rt)
        )

    @bp.post("/ops/quarantine/<sha256>/release")
    def release(sha256: str):  # type: ignore[no-untyped-def]
        # Operator credentials (before_request) and CSRF-safe: the page's token, and same origin.
        refused = _refuse_cross_site(rt)
        if refused is not None:
            return refused
        try:
            with rt.db.session() as s:
                quarantine.release(s, rt.now(), sha256)
        except NotFound:
            return Response("Not quarantined.\n", status=404, mimetype="text/plain")
        log.info("ops: content %s released from quarantine by %s", sha256[:64], g.get("convhub_actor", "operator"))
        return redirect(url_for("ops.index") + "#quarantine", code=303)

    @bp.get("/ops/data.json")
    def data_json():  # type: ignore[no-untyped-def]
        return jsonify(_snapshot(rt))

    @bp.get("/ops/jobs/<path:ref>")
    def job(ref: str):  # type: ignore[no-untyped-def]
        ref = ref.strip()
        if not ref or len(ref) > 64 or (ref.isdigit() and len(ref) > 18):
            return render_template("ops/job.html", ref=ref, info=None), 404
        try:
            with rt.db.read_session() as s:
                info = admin.show_job(s, ref)
            comparisons = comparison.for_job(s, int(info["jobId"]))  # type: ignore[call-overload]
        except (NotFound, ValueError):
            return render_template("ops/job.html", ref=ref, info=None), 404
        return render_template("ops/job.html", ref=ref, info=info, comparisons=comparisons)

    trends = trends_view.register(bp, rt)  # /ops/trends and the section's context
    comparison_view.register(bp, rt)  # /ops/comparisons/<id> and its stored images
    return bp


def csrf_token(rt: Runtime) -> str:
    """The ops page's form token: a keyed hash of the operator's credentials, unreadable cross-site."""
    key = (rt.settings.operator_password or "").encode("utf-8")
    return hmac.new(key, f"convhub-ops-form:{rt.settings.operator_user}".encode(), "sha256").hexdigest()


def _refuse_cross_site(rt: Runtime) -> Response | None:
    """403 unless the form carries the page's token and the browser says it comes from this origin."""
    token = request.form.get("csrf", "")
    if not hmac.compare_digest(token.encode("utf-8"), csrf_token(rt).encode("utf-8")):
        return Response("Missing or wrong form token.\n", status=403, mimetype="text/plain")
    here = request.host_url.rstrip("/")
    origin = request.headers.get("Origin")
    referer = request.headers.get("Referer")
    if origin is not None and origin.rstrip("/") != here:
        return Response("Cross-origin request refused.\n", status=403, mimetype="text/plain")
    if origin is None and referer and not (referer == here or referer.startswith(here + "/")):
        return Response("Cross-origin request refused.\n", status=403, mimetype="text/plain")
    return None


def human_duration(seconds: int) -> str:
    """5400 -> '1h 30m'; the page shows ages, not timestamps to subtract."""
    if seconds <= 0:
        return "0s"
    d, rem = divmod(seconds, 86400)
    h, rem = divmod(rem, 3600)
    m, s = divmod(rem, 60)
    parts = [f"{d}d" if d else "", f"{h}h" if h else "", f"{m}m" if m else "", f"{s}s" if s and not d else ""]
    return " ".join(p for p in parts if p)


def _refresh_ms() -> int:
    raw = request.args.get("refresh", "")
    seconds = int(raw) if raw.isdigit() else DEFAULT_REFRESH_SECONDS
    return max(1, min(seconds, 300)) * 1000


def _iso(value: datetime | None) -> str:
    return value.isoformat(timespec="seconds") if value else ""


def _snapshot(rt: Runtime) -> dict[str, object]:
    """Everything the page shows, as plain JSON-able data (also served as /ops/data.json)."""
    now = rt.now()
    with rt.db.read_session() as s:
        stats = ops_views.job_stats(s)
        factories = admin.list_factories(s)
        oldest = ops_views.oldest_waiting(s, now, LIST_LIMIT)
        failures = ops_views.recent_failures(s, LIST_LIMIT)
        registered, disabled, active = ops_views.factory_counts(s, now)
        farm = ops_views.farm_counts(s)
        held = quarantine.listing(s, limit=LIST_LIMIT)
        loads = ops_views.client_loads(s, rt.settings.client_max_queued)
    states = [st.name for st in JobState]
    pairs: dict[tuple[str, str], dict[str, object]] = {}
    totals = dict.fromkeys(states, 0)
    for p in stats:
        row = pairs.setdefault(
            (p.application, p.version),
            {
                "application": p.application,
                "version": p.version,
                "counts": dict.fromkeys(states, 0),
                "oldestQueuedAge": 0,
            },
        )
        name = JobState(p.state).name
        row["counts"][name] = p.count  # type: ignore[index]
        totals[name] += p.count
        if p.state == int(JobState.QUEUED) and p.oldest_submitted:
            row["oldestQueuedAge"] = max(0, int((now - p.oldest_submitted).total_seconds()))
    return {
        "now": _iso(now),
        "states": states,
        "totals": totals,
        "pairs": [pairs[k] for k in sorted(pairs)],
        "factories": factories,
        "factorySummary": {"registered": registered, "disabled": disabled, "active": active},
        "inFlight": sum(totals[st.name] for st in IN_FLIGHT),
        "oldestWaiting": oldest,
        "recentFailures": failures,
        "farm": {"quarantined": farm.quarantined, "following": farm.following, "cancelRequested": farm.cancel_requested},
        "quarantined": [
            {"sha256": q.sha256, "reason": q.reason, "factories": list(q.factories), "since": _iso(q.since)} for q in held
        ],
        "clients": [
            {
                "name": c.name, "weight": c.weight, "queued": c.queued, "inFlight": c.in_flight,
                "maxQueued": c.max_queued, "maxInFlight": c.max_in_flight,
            }
            for c in loads
        ],
    }
