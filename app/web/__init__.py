"""Flask app factory: the web composition root (XML-RPC, SOAP, health, metrics, ops)."""

from __future__ import annotations

import logging

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

from app.services.runtime import Runtime

log = logging.getLogger("convhub.web")


def create_app(rt: Runtime):  # type: ignore[no-untyped-def]
    """Build the WSGI application: Flask for /healthz, /metrics, /ops; XML-RPC's POST /xmlrpc answered
    ahead of Flask; spyne SOAP mounted beside it."""
    flask_app = Flask("convhub")
    flask_app.config["MAX_CONTENT_LENGTH"] = rt.settings.max_request_bytes
    flask_app.extensions["convhub"] = rt

    @flask_app.get("/healthz")
    def healthz():  # type: ignore[no-untyped-def]
        state = {"database": "ok", "broker": "ok"}
        try:
            rt.db.ping()
        except Exception:  # any failure means down; details go to the log only
            log.warning("healthz: database down", exc_info=True)
            state["database"] = "down"
        try:
            rt.mirror.ping()
        except Exception:
            log.warning("healthz: broker down", exc_info=True)
            state["broker"] = "down"
        ok = all(v == "ok" for v in state.values())
        return jsonify(status="ok" if ok else "unavailable", **state), (200 if ok else 503)

    @flask_app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):  # type: ignore[no-untyped-def]
        return jsonify(error=exc.name, status=exc.code), exc.code

    @flask_app.errorhandler(Exception)
    def internal_error(exc: Exception):  # type: ignore[no-untyped-def]
        log.exception("unhandled error")
        return jsonify(error="internal error", status=500), 500

    # Protocol adapters and the ops surface each take (runtime, flask_app, wsgi) and return the WSGI
    # app to serve: XML-RPC answers POST /xmlrpc ahead of Flask, SOAP mounts spyne beside Flask, and ops adds
    # its routes and wraps everything in the request-logging middleware (outermost, so SOAP is logged).
    from app.web import ops
    from protocol import soap, xmlrpc

    wsgi = flask_app.wsgi_app
    for mount in (xmlrpc.mount, soap.mount, ops.mount):
        wsgi = mount(rt, flask_app, wsgi)
    flask_app.wsgi_app = wsgi  # type: ignore[method-assign]
    return flask_app
