"""A small SOAP client for the ContentService operations `convhub convert` needs, over plain HTTP.

contentUpload, contentConvert, getContentConvertStatus, getContentConvertResult and
getConversionTargets (docs/client-api.md). Documents are streamed both ways, never held whole:

- an upload is sent as `content` parts of `PART_BYTES` bytes (8,000,000 base64 characters, under
  libxml2's text-node limit that the server keeps), read from the file one part at a time, with an
  exact Content-Length computed beforehand (the server streams large uploads only when it has one);
- a result is parsed as it arrives (lxml's pull parser) and each `content` part is decoded into the
  caller's file and dropped.

Standard library HTTP (http.client) and lxml, with the same hardened parser settings as the server.
"""

from __future__ import annotations

import base64
import http.client
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit
from xml.sax.saxutils import escape

from app.domain.matching import WorkerSpec

# The ContentService namespace and path (the server's protocol/soap.py; a unit test checks they agree).
NS = "http://www.yospace.com/tundra/ContentService/"
PATH = "/cds-controller/contentService"
SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
OK = 200

PART_BYTES = 6_000_000  # a multiple of 3: each part's base64 stands alone
READ_BYTES = 1 << 16
SMALL_REPLY_LIMIT = 16 * 1024 * 1024  # answers other than a result are a few KiB

# Called as bytes go by: (bytes transferred so far, total bytes or None when unknown).
Progress = Callable[[int, int | None], None]


class ClientError(Exception):
    """The conversation with the server failed."""


class TransportError(ClientError):
    """The server could not be reached, or the HTTP exchange broke off."""


class SoapFault(ClientError):
    """The server answered a SOAP Fault (the request was not a valid message)."""


class StatusError(ClientError):
    """The server answered a status other than 200 (e.g. 501 bad credentials, 508 unknown job)."""

    def __init__(self, operation: str, status: int, message: str) -> None:
        self.operation, self.status, self.status_message = operation, status, message
        super().__init__(f"{operation}: status {status}{': ' + message if message else ''}")


@dataclass(frozen=True)
class JobStatus:
    """A job as a client sees it (getContentConvertStatus, or the local database)."""

    job_id: int
    guid: str
    state: int
    attempts: int
    application: str
    version: str
    format: str
    failure_reason: str | None = None


@dataclass(frozen=True)
class ResultInfo:
    """A fetched result: its format, the server's file name for it, and its size in bytes."""

    format: str
    filename: str
    size: int


@dataclass(frozen=True)
class RenderingInfo:
    """One rendering of a comparison: its job, and per page (number, score, missing) against the reference."""

    job_id: int
    application: str
    version: str
    job_status: int | None
    page_count: int | None
    note: str | None
    pages: tuple[tuple[int, float | None, str | None], ...]


@dataclass(frozen=True)
class ComparisonInfo:
    """A comparison as a client sees it (getContentComparison, or the local database)."""

    comparison_id: int
    state: str  # waiting | running | complete | failed
    reference_job_id: int | None
    page_counts_differ: bool
    detail: str | None
    renderings: tuple[RenderingInfo, ...]


def _parser_options() -> dict[str, Any]:
    # As the server's HardenedSoap11: no entities, no DTD, no network, libxml2's size limits.
    return dict(resolve_entities=False, huge_tree=False, no_network=True, load_dtd=False, dtd_validation=False)


def _local(tag: object) -> str:
    return tag.rpartition("}")[2] if isinstance(tag, str) else ""


def _field(name: str, value: object) -> bytes:
    return f"<{name}>{escape(str(value))}</{name}>".encode()


def encoded_length(size: int, part_bytes: int = PART_BYTES) -> int:
    """Bytes of the `<content>` elements carrying `size` document bytes (one empty part when empty)."""
    full, rest = divmod(size, part_bytes)
    parts = [part_bytes] * full + ([rest] if rest or not full else [])
    return sum(len(b"<content></content>") + 4 * ((n + 2) // 3) for n in parts)


class ContentServiceClient:
    """One client application's calls to one server; a new HTTP connection per call."""

    def __init__(self, server: str, client: str, secret: str, *, timeout: float = 120) -> None:
        url = urlsplit(server.strip())
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ClientError(f"server {server!r} is not an http(s) URL")
        path = url.path.rstrip("/")
        if not path.endswith(PATH):  # a base URL (the usual) or the endpoint itself
            path += PATH
        self.endpoint = f"{url.scheme}://{url.netloc}{path}"
        self._scheme, self._host, self._port, self._path = url.scheme, url.hostname, url.port, path
        self.client, self.secret, self.timeout = client, secret, timeout

    # ---------------------------------------------------------------- operations

    def targets(self) -> list[WorkerSpec]:
        reply = self._call("getConversionTargets", [])
        out = []
        for el in reply:
            if _local(el.tag) != "conversionTarget":
                continue
            t = {_local(c.tag): (c.text or "").strip() for c in el}
            out.append(
                WorkerSpec(
                    t.get("application", ""),
                    t.get("version", ""),
                    frozenset(x for x in t.get("doctypes", "").split(",") if x),
                    frozenset(x for x in t.get("formats", "").split(",") if x),
                )
            )
        return out

    def upload(self, path: Path, filename: str, progress: Progress | None = None) -> str:
        """contentUpload of a file, streamed from disk; returns the contentIdentifier."""
        op = "contentUpload"
        size = path.stat().st_size
        head = self._head(op)
        tail = _field("filename", filename) + self._tail(op)
        length = len(head) + encoded_length(size) + len(tail)

        def body() -> Iterator[bytes]:
            yield head
            sent = 0
            with path.open("rb") as fh:
                while True:
                    data = fh.read(PART_BYTES)
                    if not data and sent:
                        break
                    yield b"<content>" + base64.b64encode(data) + b"</content>"
                    sent += len(data)
                    if progress:
                        progress(sent, size)
                    if not data:
                        break
            if sent != size:
                raise ClientError(f"{path} changed size while being sent ({size} -> {sent} bytes)")
            yield tail

        reply = self._reply(op, self._post(body(), length))
        return self._text(reply, op, "contentIdentifier")

    def convert(
        self, identifier: str, application: str, version: str, fmt: str, page_start: int, page_end: int
    ) -> int:
        op = "contentConvert"
        fields: list[tuple[str, object]] = [
            ("contentIdentifier", identifier), ("application", application), ("version", version),
        ]
        if fmt:
            fields.append(("format", fmt))
        fields += [("pageStart", page_start), ("pageEnd", page_end)]
        return int(self._text(self._call(op, fields), op, "jobId"))

    def convert_all(self, identifier: str, fmt: str, page_start: int, page_end: int) -> tuple[int, list[int]]:
        """contentConvertAll: (comparisonId, the jobIds)."""
        op = "contentConvertAll"
        fields: list[tuple[str, object]] = [("contentIdentifier", identifier), ("format", fmt), ("pageStart", page_start), ("pageEnd", page_end)]
        reply = self._call(op, fields)
        jobs = [int((c.text or "").strip()) for c in reply if _local(c.tag) == "jobId"]
        return int(self._text(reply, op, "comparisonId")), jobs

    def comparison(self, comparison_id: int, reference_job_id: int | None = None) -> ComparisonInfo:
        op = "getContentComparison"
        fields: list[tuple[str, object]] = [("comparisonId", comparison_id)]
        if reference_job_id is not None:
            fields.append(("referenceJobId", reference_job_id))
        reply = self._call(op, fields)
        renderings = []
        for el in reply:
            if _local(el.tag) != "rendering":
                continue
            f = {_local(c.tag): (c.text or "").strip() for c in el if _local(c.tag) != "page"}
            pages = []
            for p in el:
                if _local(p.tag) == "page":
                    g = {_local(c.tag): (c.text or "").strip() for c in p}
                    pages.append((int(g["page"]), float(g["score"]) if g.get("score") else None, g.get("missing") or None))
            renderings.append(
                RenderingInfo(
                    int(f["jobId"]), f.get("application", ""), f.get("version", ""),
                    int(f["jobStatus"]) if f.get("jobStatus") else None,
                    int(f["pageCount"]) if f.get("pageCount") else None, f.get("note") or None, tuple(pages),
                )
            )
        ref = self._text(reply, op, "referenceJobId", check=False)
        return ComparisonInfo(
            comparison_id=int(self._text(reply, op, "comparisonId")),
            state=self._text(reply, op, "comparisonStatus"),
            reference_job_id=int(ref) if ref else None,
            page_counts_differ=self._text(reply, op, "pageCountsDiffer", check=False) == "true",
            detail=self._text(reply, op, "statusDetail", check=False) or None,
            renderings=tuple(renderings),
        )

    def status(self, job_id: int) -> JobStatus:
        op = "getContentConvertStatus"
        reply = self._call(op, [("jobId", job_id)])
        f = {_local(c.tag): (c.text or "") for c in reply}
        return JobStatus(
            job_id=int(f.get("jobId") or job_id),
            guid=f.get("jobGuid", ""),
            state=int(f.get("jobStatus", "-1")),
            attempts=int(f.get("attempts") or 0),
            application=f.get("application", ""),
            version=f.get("version", ""),
            format=f.get("format", ""),
            failure_reason=f.get("failureReason") or None,
        )

    def result(self, job_id: int, sink: IO[bytes], progress: Progress | None = None) -> ResultInfo:
        """getContentConvertResult, decoded into `sink` part by part as the answer arrives.

        On any error the sink may hold part of the document: the caller writes to a temporary file."""
        from lxml import etree

        op = "getContentConvertResult"
        body = self._head(op) + _field("jobId", job_id) + self._tail(op)
        conn, resp = self._post([body], len(body))
        try:
            expected = resp.getheader("Content-Length")
            parser = etree.XMLPullParser(events=("end",), **_parser_options())
            fields: dict[str, str] = {}
            fault: str | None = None
            written = received = 0
            while True:
                data = resp.read(READ_BYTES)
                if not data:
                    break
                received += len(data)
                if progress:
                    progress(received, int(expected) if expected else None)  # the answer's bytes (~4/3 of the document's)
                parser.feed(data)
                for _, el in parser.read_events():
                    name = _local(el.tag)
                    if name == "content" and el.getparent() is not None and _local(el.getparent().tag) == f"{op}Response":
                        chunk = base64.b64decode(el.text or "")
                        sink.write(chunk)
                        written += len(chunk)
                        el.clear()
                        while el.getprevious() is not None:  # drop handled parts: memory stays flat
                            del el.getparent()[0]
                    elif name in ("status", "statusMessage", "format", "filename"):
                        fields[name] = el.text or ""
                    elif name == "faultstring":
                        fault = el.text or ""
            if expected is not None and received != int(expected):
                raise TransportError(f"{op}: the answer broke off after {received} of {expected} bytes")
            try:
                parser.close()
            except etree.XMLSyntaxError as exc:
                raise TransportError(f"{op}: the answer is not complete XML ({exc})") from None
        except (OSError, http.client.HTTPException) as exc:
            raise TransportError(f"{op}: {exc.__class__.__name__}: {exc}") from None
        finally:
            conn.close()
        if fault is not None:
            raise SoapFault(f"{op}: SOAP Fault: {fault}")
        status = int(fields.get("status") or -1)
        if status != OK:
            raise StatusError(op, status, fields.get("statusMessage", ""))
        return ResultInfo(fields.get("format", ""), fields.get("filename", ""), written)

    # ---------------------------------------------------------------- plumbing

    def _head(self, op: str) -> bytes:
        return (
            f'<?xml version="1.0" encoding="UTF-8"?>\n<soap:Envelope xmlns:soap="{SOAP_ENV}"><soap:Body>'
            f'<ns:{op}Request xmlns:ns="{NS}">'
        ).encode() + _field("clientApplicationId", self.client) + _field("clientApplicationCredentials", self.secret)

    @staticmethod
    def _tail(op: str) -> bytes:
        return f"</ns:{op}Request></soap:Body></soap:Envelope>".encode()

    def _call(self, op: str, fields: list[tuple[str, object]]) -> Any:
        body = self._head(op) + b"".join(_field(n, v) for n, v in fields) + self._tail(op)
        return self._reply(op, self._post([body], len(body)))

    def _connection(self) -> http.client.HTTPConnection:
        if self._scheme == "https":
            return http.client.HTTPSConnection(
                self._host, self._port, timeout=self.timeout, context=ssl.create_default_context()
            )
        return http.client.HTTPConnection(self._host, self._port, timeout=self.timeout)

    def _post(self, body: Any, length: int) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        """Send the body's pieces with an exact Content-Length; the connection and its response."""
        conn = self._connection()
        try:
            conn.putrequest("POST", self._path, skip_accept_encoding=True)
            conn.putheader("Content-Type", "text/xml; charset=utf-8")
            conn.putheader("SOAPAction", '""')
            conn.putheader("Content-Length", str(length))
            conn.endheaders()
            try:
                for piece in body:
                    conn.send(piece)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the server answered early (e.g. a body over its limit): read what it said
            return conn, conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise TransportError(f"{self.endpoint}: {exc.__class__.__name__}: {exc}") from None

    def _reply(self, op: str, exchange: tuple[http.client.HTTPConnection, http.client.HTTPResponse]) -> Any:
        """The `<op>Response` element of a small answer, or StatusError / SoapFault."""
        from lxml import etree

        conn, resp = exchange
        try:
            raw = resp.read(SMALL_REPLY_LIMIT + 1)
        except (OSError, http.client.HTTPException) as exc:
            raise TransportError(f"{op}: {exc.__class__.__name__}: {exc}") from None
        finally:
            conn.close()
        if len(raw) > SMALL_REPLY_LIMIT:
            raise ClientError(f"{op}: the answer is larger than {SMALL_REPLY_LIMIT} bytes")
        try:
            root = etree.fromstring(raw, etree.XMLParser(**_parser_options()))
        except etree.XMLSyntaxError:
            first = raw[:200].decode("utf-8", "replace").splitlines()[0] if raw.strip() else "(empty)"
            raise ClientError(f"{op}: HTTP {resp.status}, not a SOAP answer: {first}") from None
        body = next((el for el in root if _local(el.tag) == "Body"), None)
        answer = body[0] if body is not None and len(body) else None
        if answer is None:
            raise ClientError(f"{op}: HTTP {resp.status}, a SOAP envelope without an answer")
        if _local(answer.tag) == "Fault":
            fault = next((c.text or "" for c in answer if _local(c.tag) == "faultstring"), "")
            raise SoapFault(f"{op}: SOAP Fault: {fault}")
        status = int(self._text(answer, op, "status", check=False) or -1)
        if status != OK:
            raise StatusError(op, status, self._text(answer, op, "statusMessage", check=False))
        return answer

    @staticmethod
    def _text(answer: Any, op: str, name: str, *, check: bool = True) -> str:
        for child in answer:
            if _local(child.tag) == name:
                return (child.text or "").strip()
        if check:
            raise ClientError(f"{op}: the answer has no {name}")
        return ""
