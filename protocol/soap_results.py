"""getContentConvertResult answered as a stream.

spyne builds a response as an lxml tree and serialises it whole: a 40 MiB result cost the server
about 390 MiB (bench/bench_soap_large.py). This WSGI layer sits in front of spyne and answers only
the successful case of getContentConvertResult itself: it checks the request (small, well formed, the
expected three children), authenticates, finds the result, and then streams the same envelope spyne
would have written, base64-encoding one `content` part at a time from the blob's chunks, with an
exact Content-Length. Anything else (another operation, a malformed or oversized request, an error
status) goes to spyne untouched, so one code path still owns every error status and Fault.
"""

from __future__ import annotations

import base64
import io
import logging
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from xml.sax.saxutils import escape

from lxml import etree

from app.db.blobs import BlobGone, chunk_seqs, read_chunk
from app.db.models import Blob
from app.metrics import SOAP_STATUS
from app.runtime import Runtime
from app.services import jobs
from protocol.soap import NS
from protocol.soap import OPERATION_RESULT as OPERATION

log = logging.getLogger("convhub.soap")

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
SMALL_REQUEST = 16 * 1024  # a result request is a few hundred bytes; anything larger goes to spyne
FIELDS = ("clientApplicationId", "clientApplicationCredentials", "jobId")
_LONG = re.compile(r"\s*[+-]?\d{1,19}\s*")
_NOT_XML_CHAR = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

_PARSER = etree.XMLParser(
    resolve_entities=False, huge_tree=False, no_network=True, load_dtd=False, dtd_validation=False
)

OPEN, CLOSE = b"<content>", b"</content>"
TAIL = f"</tns:{OPERATION}Response></soap11env:Body></soap11env:Envelope>".encode()


def _head(fmt: str, filename: str) -> bytes:
    return (
        "<?xml version='1.0' encoding='UTF-8'?>\n"
        f'<soap11env:Envelope xmlns:soap11env="{SOAP_ENV}" xmlns:tns="{NS}"><soap11env:Body>'
        f"<tns:{OPERATION}Response><status>200</status>"
        f"<format>{escape(fmt)}</format><filename>{escape(filename)}</filename>"
    ).encode()


def part_sizes(size: int, part_bytes: int) -> list[int]:
    """Sizes of the `content` parts for a document of `size` bytes (one empty part when empty)."""
    full, rest = divmod(size, part_bytes)
    return [part_bytes] * full + ([rest] if rest or not full else [])


def body_length(head: bytes, size: int, part_bytes: int) -> int:
    parts = part_sizes(size, part_bytes)
    return len(head) + sum(len(OPEN) + 4 * ((n + 2) // 3) + len(CLOSE) for n in parts) + len(TAIL)


def parse_request(body: bytes) -> tuple[str, str, int] | None:
    """(client, secret, jobId) of a plain getContentConvertResultRequest, else None (spyne decides)."""
    try:
        root = etree.fromstring(body, _PARSER)
    except etree.XMLSyntaxError:
        return None
    info = root.getroottree().docinfo
    if info.doctype or info.internalDTD is not None or root.tag != f"{{{SOAP_ENV}}}Envelope":
        return None
    bodies = [el for el in root if el.tag == f"{{{SOAP_ENV}}}Body"]
    if len(bodies) != 1 or len(bodies[0]) != 1 or bodies[0][0].tag != f"{{{NS}}}{OPERATION}Request":
        return None
    values: dict[str, str] = {}
    for child in bodies[0][0]:
        if not isinstance(child.tag, str):
            continue  # comments, processing instructions
        ns, _, local = child.tag.rpartition("}")
        if ns not in ("", "{" + NS) or local not in FIELDS or local in values or len(child):
            return None
        values[local] = child.text or ""
    if set(values) != set(FIELDS) or not _LONG.fullmatch(values["jobId"]):
        return None
    job_id = int(values["jobId"])
    if not -(2**63) <= job_id < 2**63:
        return None
    return values["clientApplicationId"], values["clientApplicationCredentials"], job_id


def content_parts(chunks: Iterable[bytes], part_bytes: int) -> Iterator[bytes]:
    """`<content>` elements of at most `part_bytes` decoded bytes each, from a stream of chunks."""
    buf = bytearray()
    sent = False
    for chunk in chunks:
        buf += chunk
        while len(buf) >= part_bytes:
            yield OPEN
            yield base64.b64encode(buf[:part_bytes])
            yield CLOSE
            del buf[:part_bytes]
            sent = True
    if buf or not sent:
        yield OPEN
        yield base64.b64encode(buf)
        yield CLOSE


class StreamedResults:
    """WSGI middleware: successful getContentConvertResult answered by streaming (see module doc)."""

    def __init__(self, app: Callable[..., Any], rt: Runtime, part_bytes: int) -> None:
        self.app, self.rt, self.part_bytes = app, rt, part_bytes

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD", "GET").upper() != "POST":
            return self.app(environ, start_response)  # type: ignore[no-any-return]
        try:
            length = int((environ.get("CONTENT_LENGTH") or "").strip() or -1)
        except ValueError:
            return self.app(environ, start_response)  # type: ignore[no-any-return]
        if not 0 < length <= SMALL_REQUEST:
            return self.app(environ, start_response)  # type: ignore[no-any-return]
        body = environ["wsgi.input"].read(length)
        environ["wsgi.input"] = io.BytesIO(body)  # spyne reads it again if we pass
        request = parse_request(body)
        found = self._find(request) if request else None
        if found is None:
            return self.app(environ, start_response)  # type: ignore[no-any-return]
        fmt, filename, blob_id, size = found
        head = _head(fmt, filename)
        start_response(
            "200 OK",
            [
                ("Content-Type", "text/xml; charset=utf-8"),
                ("Content-Length", str(body_length(head, size, self.part_bytes))),
            ],
        )
        SOAP_STATUS.labels(OPERATION, "200").inc()
        return self._stream(head, blob_id, size)

    def _find(self, request: tuple[str, str, int]) -> tuple[str, str, int, int] | None:
        """The result to stream, or None when spyne should answer (an error status, odd names)."""
        name, secret, job_id = request
        rt = self.rt
        try:
            with rt.db.read_session() as s:
                who = rt.auth.client(s, name, secret, rt.now())
                result = jobs.result_of(s, who.id, job_id)
                size = s.get(Blob, result.blob_id).size  # type: ignore[union-attr]
                found = (result.format or "", result.filename or "", result.blob_id, int(size))
        except Exception:  # noqa: BLE001 - spyne repeats the call and answers the error status
            return None
        if _NOT_XML_CHAR.search(found[0] + found[1]):
            return None
        return found

    def _stream(self, head: bytes, blob_id: int, size: int) -> Iterator[bytes]:
        yield head
        yield from content_parts(self._chunks(blob_id, size), self.part_bytes)
        yield TAIL

    def _chunks(self, blob_id: int, size: int) -> Iterator[bytes]:
        """The blob's chunks, each read in its own short session (a slow client holds no connection).

        A blob purged meanwhile (its job deleted) raises BlobGone: the server drops the connection
        short of Content-Length, so the client sees a failed transfer, never a document with a hole."""
        with self.rt.db.read_session() as s:
            seqs = chunk_seqs(s, blob_id)
        sent = 0
        for seq in seqs:
            with self.rt.db.read_session() as s:
                data = read_chunk(s, blob_id, seq)
            if data is None:
                break
            sent += len(data)
            yield data
        if sent != size:
            log.warning("result blob %s was purged while being streamed; response cut short", blob_id)
            raise BlobGone(f"blob {blob_id}: {sent} of {size} bytes left to stream")
