"""Factory-side XML-RPC: ``POST /xmlrpc`` on the Flask app (see docs/factory-protocol.md).

One request: check the size, authenticate (HTTP Basic, or a trusted proxy's client-certificate
header), parse the body incrementally with limits, dispatch to one method, write the response
(streamed when it carries a document). Every failure becomes a fault through ``faults.FAULTS``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from flask import Flask, Response, g, request
from werkzeug.exceptions import ClientDisconnected

from app.domain.errors import AuthenticationFailed, BadArgument, Throttled, TooLarge
from app.services.auth import FactoryIdentity
from app.services.runtime import Runtime
from protocol.source import caller_of

from . import wire
from .methods import METHODS, Context, dispatch, record_fault

__all__ = ["METHODS", "mount"]

CONTENT_TYPE = "text/xml; charset=utf-8"
REALM = 'Basic realm="convhub factories", charset="UTF-8"'


def _read_block(stream: Any) -> bytes:
    """One block of the body; a body cut short or with broken chunked framing is the client's error."""
    try:
        return stream.read(wire.READ_BLOCK)  # type: ignore[no-any-return]
    except (ClientDisconnected, OSError, ValueError):
        raise BadArgument("the request body ended early or its chunked framing is broken") from None


class _NoCredentials(AuthenticationFailed):
    """No credentials were sent."""


def mount(rt: Runtime, flask_app: Flask, wsgi: Any) -> Any:
    """Register ``POST /xmlrpc`` on ``flask_app``; the WSGI pipeline is returned unchanged."""
    endpoint = _Endpoint(rt)
    flask_app.add_url_rule("/xmlrpc", "xmlrpc", endpoint.handle, methods=["POST"])
    return wsgi


class _Endpoint:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.cap = rt.settings.max_request_bytes

    def handle(self) -> Response:
        state = {"consumed": False}
        try:
            if request.content_length is not None and request.content_length > self.cap:
                raise TooLarge(f"request body is {request.content_length} bytes; the limit is {self.cap}")
            factory = self._authenticate()
            g.convhub_actor = f"factory:{factory.name}"  # for the request log line
            with wire.parse(self._body(state)) as call:
                result = dispatch(Context(self.rt, factory), call.method, call.params)
            pieces = wire.marshal(result)
        except Exception as exc:  # every failure is answered as a fault
            code, text = record_fault(exc)
            resp = Response(wire.fault(code, text), status=200, content_type=CONTENT_TYPE)
            if isinstance(exc, _NoCredentials):
                # No credentials at all: a real HTTP 401 so stock clients and proxies can prompt;
                # the body is still the fault. Wrong credentials get the usual HTTP 200 fault.
                resp.status_code = 401
                resp.headers["WWW-Authenticate"] = REALM
            if isinstance(exc, Throttled):
                resp.headers["Retry-After"] = str(exc.fields.get("retryAfterSeconds", 1))
            if not state["consumed"]:
                # The body was not (fully) read: the connection cannot carry another request.
                resp.headers["Connection"] = "close"
            return resp
        return Response(
            wire.stream(pieces),
            status=200,
            content_type=CONTENT_TYPE,
            headers={"Content-Length": str(wire.content_length(pieces))},
            direct_passthrough=True,
        )

    def _authenticate(self) -> FactoryIdentity:
        rt = self.rt
        header = rt.settings.trust_proxy_client_cert_header
        if header:
            # Set by the TLS-terminating proxy from the verified client certificate; the proxy
            # must overwrite any value the client sent.
            name = request.headers.get(header, "").strip()
            if name:
                return rt.db.run(lambda s: rt.auth.factory(s, name, None, rt.now()), read=True)
        auth = request.authorization
        if auth is None or auth.type != "basic" or not auth.username:
            raise _NoCredentials("authentication required: HTTP Basic with the factory name and secret")
        name, secret = auth.username, auth.password or ""
        caller = caller_of(request.environ, rt.settings.trusted_proxies)
        # A cached credential costs no round trip (no connection is taken unless `load` runs).
        return rt.db.run(lambda s: rt.auth.factory(s, name, secret, rt.now(), caller), read=True)

    def _body(self, state: dict[str, bool]) -> Iterator[bytes]:
        stream = request.stream
        total = 0
        while chunk := _read_block(stream):
            total += len(chunk)
            if total > self.cap:
                raise TooLarge(f"request body is larger than the limit of {self.cap} bytes")
            yield chunk
        state["consumed"] = True
