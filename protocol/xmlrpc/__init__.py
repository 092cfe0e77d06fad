"""Factory-side XML-RPC: ``POST /xmlrpc``, answered ahead of Flask (see docs/factory-protocol.md).

One request: check the size, authenticate (HTTP Basic, or a trusted proxy's client-certificate
header), parse the body incrementally with limits, dispatch to one method, write the response
(streamed when it carries a document). Every failure becomes a fault through ``faults.FAULTS``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from flask import Flask
from werkzeug.datastructures import Authorization
from werkzeug.exceptions import ClientDisconnected
from werkzeug.wsgi import get_content_length, get_input_stream

from app.domain.errors import AuthenticationFailed, BadArgument, Throttled, TooLarge
from app.services.auth import FactoryIdentity
from app.services.runtime import Runtime
from protocol.source import caller_of

from . import wire
from .methods import METHODS, Context, dispatch, record_fault

__all__ = ["METHODS", "PATH", "mount"]

PATH = "/xmlrpc"
CONTENT_TYPE = "text/xml; charset=utf-8"
REALM = 'Basic realm="convhub factories", charset="UTF-8"'
# Read by the request-log middleware (app.web.ops) for its line: who called.
ACTOR_ENVIRON_KEY = "convhub.actor"
# A response up to this size is encoded at once and handed over as one piece (the usual poll: a
# one-chunk document); a larger one is streamed, its documents encoded chunk by chunk.
WHOLE_UP_TO = 1024 * 1024

StartResponse = Callable[..., Any]


def _read_block(stream: Any) -> bytes:
    """One block of the body; a body cut short or with broken chunked framing is the client's error."""
    try:
        return stream.read(wire.READ_BLOCK)  # type: ignore[no-any-return]
    except (ClientDisconnected, OSError, ValueError):
        raise BadArgument("the request body ended early or its chunked framing is broken") from None


class _NoCredentials(AuthenticationFailed):
    """No credentials were sent."""


def mount(rt: Runtime, flask_app: Flask, wsgi: Any) -> Any:
    """Answer ``POST /xmlrpc`` ahead of Flask: the hot path (every factory poll) skips Flask's
    request context, routing and response objects. Flask keeps the route, so any other method on
    ``/xmlrpc`` gets its usual 405; everything else goes on down ``wsgi`` unchanged."""
    endpoint = Endpoint(rt)
    flask_app.add_url_rule(PATH, "xmlrpc", lambda: endpoint, methods=["POST"])  # a view may return a WSGI app
    return _XmlRpcFirst(endpoint, wsgi)


class _XmlRpcFirst:
    def __init__(self, endpoint: Endpoint, app: Callable[..., Any]) -> None:
        self.endpoint, self.app = endpoint, app

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == PATH and environ.get("REQUEST_METHOD") == "POST":
            return self.endpoint(environ, start_response)
        return self.app(environ, start_response)


class Endpoint:
    """``POST /xmlrpc`` as a plain WSGI application."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.cap = rt.settings.max_request_bytes
        header = rt.settings.trust_proxy_client_cert_header
        self.cert_key = "HTTP_" + header.upper().replace("-", "_") if header else None

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        state = {"consumed": False}
        try:
            length = get_content_length(environ)
            if length is not None and length > self.cap:
                raise TooLarge(f"request body is {length} bytes; the limit is {self.cap}")
            factory = self._authenticate(environ)
            environ[ACTOR_ENVIRON_KEY] = f"factory:{factory.name}"
            with wire.parse(self._body(environ, state)) as call:
                result = dispatch(Context(self.rt, factory), call.method, call.params)
            pieces = wire.marshal(result)
            size = wire.content_length(pieces)
            # Encoded here, before the status is sent: a document that cannot be read is a fault.
            whole = b"".join(wire.stream(pieces)) if size <= WHOLE_UP_TO else None
        except Exception as exc:  # every failure is answered as a fault
            code, text = record_fault(exc)
            body = wire.fault(code, text)
            status = "200 OK"
            headers = [("Content-Type", CONTENT_TYPE), ("Content-Length", str(len(body)))]
            if isinstance(exc, _NoCredentials):
                # No credentials at all: a real HTTP 401 so stock clients and proxies can prompt;
                # the body is still the fault. Wrong credentials get the usual HTTP 200 fault.
                status = "401 UNAUTHORIZED"
                headers.append(("WWW-Authenticate", REALM))
            if isinstance(exc, Throttled):
                headers.append(("Retry-After", str(exc.fields.get("retryAfterSeconds", 1))))
            if not state["consumed"]:
                # The body was not (fully) read: the connection cannot carry another request.
                headers.append(("Connection", "close"))
            start_response(status, headers)
            return [body]
        start_response("200 OK", [("Content-Type", CONTENT_TYPE), ("Content-Length", str(size))])
        return [whole] if whole is not None else wire.stream(pieces)

    def _authenticate(self, environ: dict[str, Any]) -> FactoryIdentity:
        rt = self.rt
        if self.cert_key:
            # Set by the TLS-terminating proxy from the verified client certificate; the proxy
            # must overwrite any value the client sent.
            name = str(environ.get(self.cert_key, "")).strip()
            if name:
                return rt.db.run(lambda s: rt.auth.factory(s, name, None, rt.now()), read=True)
        auth = Authorization.from_header(environ.get("HTTP_AUTHORIZATION"))
        if auth is None or auth.type != "basic" or not auth.username:
            raise _NoCredentials("authentication required: HTTP Basic with the factory name and secret")
        name, secret = auth.username, auth.password or ""
        caller = caller_of(environ, rt.settings.trusted_proxies)
        now = rt.now()
        # A cached credential costs no round trip and no session.
        cached = rt.auth.cached_factory(name, secret, now, caller)
        if cached is not None:
            return cached
        return rt.db.run(lambda s: rt.auth.factory(s, name, secret, now, caller), read=True)

    def _body(self, environ: dict[str, Any], state: dict[str, bool]) -> Iterator[bytes]:
        stream = get_input_stream(environ, max_content_length=self.cap)
        total = 0
        while chunk := _read_block(stream):
            total += len(chunk)
            if total > self.cap:
                raise TooLarge(f"request body is larger than the limit of {self.cap} bytes")
            yield chunk
        state["consumed"] = True
