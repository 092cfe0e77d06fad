"""SOAP adapter for client applications: the Tundra ContentService, mounted beside Flask.

    compat.py      spyne 2.14 imported quietly, its vendored six fixed for Python 3.11
    schema.py      namespace, status codes and their table, wire types, the operation table
    operations.py  one body per operation (one service call each); ContentService generated from the table
    hardening.py   hardened parser, body size guard, Faults instead of tracebacks
    streaming.py   contentUpload / getContentConvertResult streamed past spyne when they succeed

This package only translates: wire arguments -> one service call -> status code. See docs/client-api.md.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from werkzeug.middleware.dispatcher import DispatcherMiddleware

from app.services.runtime import Runtime

from .compat import Application, WsgiApplication
from .hardening import (
    HardenedSoap11,
    OneLineFaults,
    UnqualifiedDocuments,
    fault_response,
    quiet_client_faults,
    size_limited,
)
from .operations import ContentService
from .schema import (
    AUTH_FAILED,
    NS,
    OPERATION_RESULT,
    OPERATION_UPLOAD,
    PATH,
    RESULT_PART_BYTES,
    STATUS,
    status_of,
)
from .streaming import StreamedResults, StreamedUploads

__all__ = [
    "AUTH_FAILED",
    "NS",
    "OPERATION_RESULT",
    "OPERATION_UPLOAD",
    "PATH",
    "RESULT_PART_BYTES",
    "STATUS",
    "ContentService",
    "HardenedSoap11",
    "build_application",
    "fault_response",
    "mount",
    "size_limited",
    "spyne_wsgi_app",
    "status_of",
]


def build_application(rt: Runtime) -> Application:
    app = Application(
        [ContentService],
        tns=NS,
        name="ContentService",
        in_protocol=HardenedSoap11(validator="soft"),
        out_protocol=OneLineFaults(),
        documents_container=UnqualifiedDocuments,
    )
    app.convhub_runtime = rt  # read back by the operations through ctx.app
    return app


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
    quiet_client_faults()  # a Client fault is answered on the wire, not logged with a traceback
    return spyne_wsgi


def mount(rt: Runtime, flask_app: Any, wsgi: Callable[..., Any]) -> DispatcherMiddleware:
    """Serve ContentService at /cds-controller/contentService (WSDL at ?wsdl) beside the Flask app."""
    streamed = StreamedUploads(StreamedResults(spyne_wsgi_app(rt), rt, RESULT_PART_BYTES), rt)
    return DispatcherMiddleware(wsgi, {PATH: size_limited(streamed, rt.settings.max_request_bytes)})
