"""The two SOAP operations that carry documents, streamed past spyne.

spyne parses a request into an lxml tree and builds a response as one too, each whole in memory: a
100 MiB upload cost the server +365 MiB and a 40 MiB result +390 MiB (bench/bench_soap_large.py).
Two WSGI layers in front of spyne answer the *successful, plainly shaped* cases themselves:

- `StreamedUploads`: a contentUpload over 1 MiB is spooled to a temporary file, checked in a first
  streaming pass (shape, base64, size, credentials) and stored in a second, one `content` part at a
  time.
- `StreamedResults`: a getContentConvertResult is answered from the blob's chunks, one `content`
  part at a time, with an exact Content-Length.

Both answer byte for byte what spyne would have written. Anything else (another operation, an odd
shape, a Header, a DOCTYPE, bad base64, any error status) goes to spyne with the request untouched,
so spyne still owns every error status and every Fault.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import logging
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from xml.sax.saxutils import escape

from lxml import etree

from app.domain.errors import AuthenticationFailed, Throttled
from app.domain.throttle import Caller
from app.metrics import SOAP_STATUS
from app.services import client_views, documents, request_ids, submission
from app.services.auth import ClientIdentity
from app.services.runtime import Runtime
from protocol.source import caller_of

from .hardening import action_matches, fault_response
from .schema import AUTH_FAILED, NS
from .schema import OPERATION_RESULT as OPERATION
from .schema import OPERATION_UPLOAD as UPLOAD

log = logging.getLogger("convhub.soap")

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
SMALL_REQUEST = 16 * 1024  # a result request is a few hundred bytes; anything larger goes to spyne
FIELDS = ("clientApplicationId", "clientApplicationCredentials", "jobId")
_LONG = re.compile(r"\s*[+-]?\d{1,19}\s*")
_NOT_XML_CHAR = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

# The settings of HardenedSoap11: no entities, no DTD, no network, libxml2's default size limits.
_HARDENED = dict(resolve_entities=False, huge_tree=False, no_network=True, load_dtd=False, dtd_validation=False)
_PARSER = etree.XMLParser(**_HARDENED)  # type: ignore[arg-type]
ENVELOPE, BODY = f"{{{SOAP_ENV}}}Envelope", f"{{{SOAP_ENV}}}Body"

OPEN, CLOSE = b"<content>", b"</content>"


def _response_head(op: str, status: int = 200) -> bytes:
    """What spyne writes before the fields of an answer to `op`."""
    return (
        "<?xml version='1.0' encoding='UTF-8'?>\n"
        f'<soap11env:Envelope xmlns:soap11env="{SOAP_ENV}" xmlns:tns="{NS}"><soap11env:Body>'
        f"<tns:{op}Response><status>{status}</status>"
    ).encode()


def _response_tail(op: str) -> bytes:
    return f"</tns:{op}Response></soap11env:Body></soap11env:Envelope>".encode()


TAIL = _response_tail(OPERATION)


def _head(fmt: str, filename: str) -> bytes:
    return _response_head(OPERATION) + f"<format>{escape(fmt)}</format><filename>{escape(filename)}</filename>".encode()


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
    if info.doctype or info.internalDTD is not None or root.tag != ENVELOPE:
        return None
    bodies = [el for el in root if el.tag == BODY]
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


def post_length(environ: dict[str, Any]) -> int:
    """The Content-Length of a POST; -1 for other methods, a missing or a malformed length."""
    if environ.get("REQUEST_METHOD", "GET").upper() != "POST":
        return -1
    try:
        return int((environ.get("CONTENT_LENGTH") or "").strip() or -1)
    except ValueError:
        return -1


class StreamedResults:
    """WSGI middleware: successful getContentConvertResult answered by streaming (see module doc)."""

    def __init__(self, app: Callable[..., Any], rt: Runtime, part_bytes: int) -> None:
        self.app, self.rt, self.part_bytes = app, rt, part_bytes

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        length = post_length(environ)
        if not 0 < length <= SMALL_REQUEST or not action_matches(environ, OPERATION):
            return self.app(environ, start_response)  # type: ignore[no-any-return]
        body = environ["wsgi.input"].read(length)
        environ["wsgi.input"] = io.BytesIO(body)  # spyne reads it again if we pass
        request = parse_request(body)
        found = self._find(request, caller_of(environ, self.rt.settings.trusted_proxies)) if request else None
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

    def _find(self, request: tuple[str, str, int], caller: Caller) -> tuple[str, str, int, int] | None:
        """The result to stream, or None when spyne should answer (an error status, odd names)."""
        name, secret, job_id = request
        rt = self.rt
        try:
            with rt.db.read_session() as s:
                who = rt.auth.client(s, name, secret, rt.now(), caller)
                result = client_views.result_of(s, who.id, job_id)
            fmt, filename, blob_id, size = result.format, result.filename, result.blob_id, result.size
        except Exception:  # spyne repeats the call and answers the error status
            return None
        if fmt is None or filename is None or _NOT_XML_CHAR.search(fmt + filename):
            return None  # spyne leaves an absent field out and refuses what XML cannot carry
        return fmt, filename, blob_id, int(size)

    def _stream(self, head: bytes, blob_id: int, size: int) -> Iterator[bytes]:
        yield head
        yield from content_parts(self._chunks(blob_id, size), self.part_bytes)
        yield TAIL

    def _chunks(self, blob_id: int, size: int) -> Iterator[bytes]:
        """The result's chunks, each read in its own short session; a result purged meanwhile cuts
        the response short (documents.BlobGone), never a document with a hole."""
        return documents.stream_checked(self.rt.db, blob_id, size)


# ------------------------------------------------------------------ contentUpload

STREAM_UPLOADS_OVER = 1024 * 1024  # smaller uploads go to spyne: spooling them gains nothing
EARLY_AUTH_BYTES = 64 * 1024  # where the plain shape's credentials are looked for, before spooling
# clientApplicationId, clientApplicationCredentials, content+, filename, requestId?
_UPLOAD_ORDER = re.compile(r"IC(B)+FR?")
_UPLOAD_CODES = {"clientApplicationId": "I", "clientApplicationCredentials": "C", "content": "B", "filename": "F", "requestId": "R"}


class NotPlain(Exception):
    """The request is not a plainly shaped contentUploadRequest: spyne decides what it is."""


def upload_fields(fileobj: Any) -> Iterator[tuple[str, str]]:
    """(name, text) of each child of a plainly shaped contentUploadRequest, in document order, parsed
    as a stream (each child's text is freed once yielded); NotPlain for any other shape."""
    try:
        yield from _children(etree.iterparse(fileobj, events=("start", "end"), **_HARDENED))
    except etree.XMLSyntaxError as exc:
        raise NotPlain("not well-formed XML") from exc


def credentials_first(head: bytes) -> tuple[str, str] | None:
    """(clientApplicationId, clientApplicationCredentials) when they open a plainly shaped
    contentUploadRequest within the first bytes of the body; None otherwise."""
    parser = etree.XMLPullParser(events=("start", "end"), **_HARDENED)
    found: list[tuple[str, str]] = []
    try:
        parser.feed(head)
        for name, text in _children(parser.read_events()):
            found.append((name, text))
            if len(found) == 2:
                break
    except (etree.XMLSyntaxError, NotPlain):
        return None
    if [name for name, _ in found] != ["clientApplicationId", "clientApplicationCredentials"]:
        return None
    return found[0][1], found[1][1]


def _children(events: Iterable[tuple[str, Any]]) -> Iterator[tuple[str, str]]:
    """The plain shape's children from (event, element) pairs of a start/end parse."""
    depth = 0
    for event, el in events:
        if event == "start":
            depth += 1
            if depth == 1:
                info = el.getroottree().docinfo
                if el.tag != ENVELOPE or info.doctype or info.internalDTD is not None:
                    raise NotPlain("not a SOAP 1.1 envelope")
            elif depth == 2 and el.tag != BODY:
                raise NotPlain("a Header (or something else) before the Body")
            elif depth == 3 and (el.tag != f"{{{NS}}}{UPLOAD}Request" or el.getprevious() is not None):
                raise NotPlain("another operation")
            elif depth > 4:
                raise NotPlain("nested elements")
            continue
        if depth == 4:
            ns, _, local = el.tag.rpartition("}")
            if ns not in ("", "{" + NS) or local not in _UPLOAD_CODES or len(el):
                raise NotPlain(f"unexpected element {local}")
            yield local, el.text or ""
            el.clear()
            while el.getprevious() is not None:  # drop what was handled: memory stays flat
                del el.getparent()[0]
        elif depth == 3 and el.getnext() is not None:
            raise NotPlain("more than one operation")
        depth -= 1


def _decode(text: str) -> bytes:
    try:
        return base64.b64decode(text)  # as spyne decodes a ByteArray: non-alphabet characters skipped
    except (binascii.Error, ValueError) as exc:
        raise NotPlain("invalid base64") from exc


class StreamedUploads:
    """WSGI middleware: a successful contentUpload over `threshold` bytes, stored as a stream."""

    def __init__(self, app: Callable[..., Any], rt: Runtime, threshold: int = STREAM_UPLOADS_OVER) -> None:
        self.app, self.rt, self.threshold = app, rt, threshold

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        length = post_length(environ)
        if length <= self.threshold or not action_matches(environ, UPLOAD):
            return self.app(environ, start_response)  # type: ignore[no-any-return]
        source = environ["wsgi.input"]
        head = _read(source, min(EARLY_AUTH_BYTES, length))
        caller = caller_of(environ, self.rt.settings.trusted_proxies)
        who, refused = self._authenticate_early(head, caller)
        if refused is not None:
            _copy(source, None, length - len(head))  # read the rest away, keep none of it
            start_response(
                "200 OK", [("Content-Type", "text/xml; charset=utf-8"), ("Content-Length", str(len(refused)))]
            )
            return [refused]
        spool = tempfile.TemporaryFile()  # handed to spyne on fallback; closed with its owner
        spool.write(head)
        received = len(head) + _copy(source, spool, length - len(head))
        if received < length:
            spool.close()
            return fault_response(start_response, "Client", f"request body ended after {received} of {length} bytes")
        identifier = None
        try:
            identifier = self._store(spool, who, caller)
        except NotPlain as exc:
            log.debug("contentUpload handed to spyne: %s", exc)
        except Exception:  # spyne repeats the call and answers the error status
            log.debug("contentUpload handed to spyne after an error", exc_info=True)
        if identifier is None:
            spool.seek(0)
            environ["wsgi.input"] = spool
            return self.app(environ, start_response)  # type: ignore[no-any-return]
        spool.close()
        body = _response_head(UPLOAD) + f"<contentIdentifier>{escape(identifier)}</contentIdentifier>".encode()
        body += _response_tail(UPLOAD)
        start_response("200 OK", [("Content-Type", "text/xml; charset=utf-8"), ("Content-Length", str(len(body)))])
        SOAP_STATUS.labels(UPLOAD, "200").inc()
        return [body]

    def _authenticate_early(self, head: bytes, caller: Caller) -> tuple[ClientIdentity | None, bytes | None]:
        """Check the credentials at the start of the body: (the client, None) when they are right,
        (None, the 501 answer) when they are wrong, so an unknown or wrong client costs no spooling
        and no parse of the document; (None, None) when they cannot be told yet."""
        creds = credentials_first(head)
        if creds is None:
            return None, None
        rt = self.rt
        try:
            with rt.db.read_session() as s:
                return rt.auth.client(s, creds[0], creds[1], rt.now(), caller), None
        except AuthenticationFailed as exc:
            SOAP_STATUS.labels(UPLOAD, "501").inc()
            text = exc.message if isinstance(exc, Throttled) else AUTH_FAILED
            message = f"<statusMessage>{escape(text)}</statusMessage>".encode()
            return None, _response_head(UPLOAD, 501) + message + _response_tail(UPLOAD)
        except Exception:  # the database is away, say: the normal path decides
            return None, None

    def _store(self, spool: Any, who: ClientIdentity | None, caller: Caller) -> str:
        """Pass 1 checks everything that could fail (shape, base64, size, credentials); pass 2 stores.
        Any failure raises before or rolls back, and the caller hands the request to spyne."""
        rt = self.rt
        spool.seek(0)
        order, fields, size, digest = [], {}, 0, hashlib.sha256()
        for name, text in upload_fields(spool):
            order.append(_UPLOAD_CODES[name])
            if name == "content":
                data = _decode(text)
                size += len(data)
                digest.update(data)
            else:
                fields[name] = text
        if not _UPLOAD_ORDER.fullmatch("".join(order)):
            raise NotPlain("fields out of order or repeated")
        if not 0 < size <= rt.settings.max_document_bytes:
            raise NotPlain("empty or too large: spyne answers 599")
        if who is None:  # not checked early (the credentials were not in the plain place at the start)
            with rt.db.read_session() as s:
                who = rt.auth.client(
                    s, fields["clientApplicationId"], fields["clientApplicationCredentials"], rt.now(), caller
                )

        def parts() -> Iterator[bytes]:
            spool.seek(0)
            for name, text in upload_fields(spool):
                if name == "content":
                    yield _decode(text)

        def create(s: Any) -> str:
            return submission.upload(
                s, rt.now(), client_id=who.id, filename=fields["filename"], parts=parts(),
                max_bytes=rt.settings.max_document_bytes,
            ).identifier

        return request_ids.once(
            rt.db, rt.now(), client_id=who.id, operation=UPLOAD, request_id=request_ids.clean(fields.get("requestId")),
            fingerprint=lambda: request_ids.fingerprint(UPLOAD, fields["filename"], digest.hexdigest()), create=create,
        )


def _copy(source: Any, target: Any, length: int) -> int:
    """Copy up to `length` bytes in 1 MiB reads (into nothing when `target` is None); returns how
    many arrived."""
    received = 0
    while received < length:
        chunk = source.read(min(1 << 20, length - received))
        if not chunk:
            break
        if target is not None:
            target.write(chunk)
        received += len(chunk)
    return received


def _read(source: Any, n: int) -> bytes:
    """Up to `n` bytes (fewer only when the body ends)."""
    buf = io.BytesIO()
    _copy(source, buf, n)
    return buf.getvalue()
