"""Hostile-input helpers: requests written byte by byte to a socket, answers parsed loosely, and the
checks every answer must pass (a fault or a status with one clear line; no traceback, no SQL)."""

from __future__ import annotations

import base64
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit
from xml.sax.saxutils import escape

from lxml import etree

from protocol.soap import NS, PATH

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
SAFE = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=True)
FACTORY = ("factory-1", "factory-secret-1")
LEAKS = re.compile(
    r"Traceback|File \"|sqlalchemy|psycopg|sqlite3|IntegrityError|OperationalError|ProgrammingError|"
    r"\bSELECT\b.+\bFROM\b|\bINSERT INTO\b|\bUPDATE \w+ SET\b|\bDELETE FROM\b|/work/|site-packages",
    re.S,
)


@dataclass
class Target:
    server: Any
    rt: Any
    db: str
    jobs: list[tuple[int, str]] = field(default_factory=list)  # (jobId, guid)
    my_content: str = ""
    their_content: str = ""

    @property
    def addr(self) -> tuple[str, int]:
        u = urlsplit(self.server.url)
        return u.hostname or "127.0.0.1", int(u.port or 80)


def dump(rt: Any) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, in a stable order."""
    from sqlalchemy import select

    from app.db.models import Base

    out: dict[str, list[tuple[Any, ...]]] = {}
    with rt.db.read_session() as s:
        for table in Base.metadata.sorted_tables:
            rows = [tuple(r) for r in s.execute(select(table)).all()]
            out[table.name] = sorted(rows, key=repr)
    return out


# ------------------------------------------------------------------ the wire


@dataclass
class Answer:
    status: int  # HTTP status; 0 when the server closed without answering
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


def request_bytes(
    method: str,
    path: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    *,
    content_length: int | None | str = "auto",
    chunked: bool = False,
) -> bytes:
    head = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    hs = dict(headers or {})
    if chunked:
        hs["Transfer-Encoding"] = "chunked"
        parts = [body[i : i + 4096] for i in range(0, len(body), 4096)]
        body = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"
    elif content_length == "auto":
        if body or method in ("POST", "PUT", "PATCH"):
            hs["Content-Length"] = str(len(body))
    elif content_length is not None:
        hs["Content-Length"] = str(content_length)
    head += [f"{k}: {v}" for k, v in hs.items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode("utf-8", "surrogateescape") + body


def send(target: Target, raw: bytes, *, timeout: float = 30, half_close: bool = True) -> Answer:
    """Write `raw`, close our sending side (so a body shorter than its Content-Length ends), read all."""
    with socket.create_connection(target.addr, timeout=timeout) as sock:
        try:
            sock.sendall(raw)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
        except OSError:  # the server refused early (a size limit) and closed: read what it said
            pass
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except OSError:  # reset after an early refusal
            pass
    return parse_answer(b"".join(chunks))


def parse_answer(data: bytes) -> Answer:
    if not data:
        return Answer(0, {}, b"")
    while data.startswith(b"HTTP/1.1 100 "):  # an interim "100 Continue"
        data = data.partition(b"\r\n\r\n")[2]
    if not data.startswith(b"HTTP/"):
        return Answer(400, {}, data)  # an HTTP/0.9-style error page (no status line) for a broken request line
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        out, rest = b"", body
        while rest:
            size_line, _, rest = rest.partition(b"\r\n")
            n = int(size_line.split(b";")[0] or b"0", 16)
            if n == 0:
                break
            out, rest = out + rest[:n], rest[n + 2 :]
        body = out
    return Answer(status, headers, body)


# ------------------------------------------------------------------ request builders


def soap_body(op: str, fields: list[tuple[str, str]] | None = None, *, creds: tuple[str, str] | None = ("petshow", "Wf")) -> bytes:
    """A request with `fields` written as given (already escaped or deliberately not)."""
    items = ([("clientApplicationId", creds[0]), ("clientApplicationCredentials", creds[1])] if creds else []) + list(fields or [])
    kids = "".join(f"<{k}>{v}</{k}>" for k, v in items)
    return (
        f'<soap:Envelope xmlns:soap="{SOAP_ENV}"><soap:Body><ns2:{op}Request xmlns:ns2="{NS}">{kids}</ns2:{op}Request>'
        "</soap:Body></soap:Envelope>"
    ).encode("utf-8", "surrogateescape")


def soap(body: bytes, headers: dict[str, str] | None = None, **kw: Any) -> bytes:
    return request_bytes("POST", PATH, body, {"Content-Type": "text/xml; charset=utf-8", **(headers or {})}, **kw)


def basic(name: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{name}:{secret}".encode("utf-8", "surrogatepass")).decode()


def xmlrpc_body(method: str, params_xml: str = "") -> bytes:
    return f"<?xml version='1.0'?><methodCall><methodName>{method}</methodName><params>{params_xml}</params></methodCall>".encode(
        "utf-8", "surrogateescape"
    )


def p(value_xml: str) -> str:
    return f"<param><value>{value_xml}</value></param>"


def s(text: str) -> str:
    return f"<string>{text}</string>"


def xmlrpc(body: bytes, auth: tuple[str, str] | None = FACTORY, headers: dict[str, str] | None = None, **kw: Any) -> bytes:
    hs = {"Content-Type": "text/xml"}
    if auth is not None:
        hs["Authorization"] = basic(*auth)
    return request_bytes("POST", "/xmlrpc", body, {**hs, **(headers or {})}, **kw)


# ------------------------------------------------------------------ the checks


def one_line(text: str | None, what: str) -> None:
    assert text and text.strip(), f"{what}: empty"
    assert "\n" not in text.strip(), f"{what} spans lines: {text[:300]!r}"
    assert len(text) < 2000, f"{what} is {len(text)} characters"


def check_clean(a: Answer, *, may_succeed: bool = False, echo: Iterable[str] = ()) -> str:
    """The answer is a refusal (or, when allowed, a success) with one clear line; returns its kind.
    `echo`: values the request carried, which a message may quote (they are not leaks)."""
    assert a.status != 0, "the server closed the connection without an answer"
    text = a.text
    for value in echo:
        html = escape(value, {"'": "&#39;", '"': "&#34;"})  # as the ops page's templates escape it
        for form in (value, escape(value), escape(value, {"'": "&apos;", '"': "&quot;"}), html, repr(value)[1:-1]):
            text = text.replace(form[:200], "")
    assert not LEAKS.search(text), f"leak in answer: {a.text[:500]!r}"
    assert a.status < 500 or a.status == 500 and b"Fault" in a.body, (a.status, a.text[:300])
    if a.body.lstrip().startswith(b"<") and (b"Envelope" in a.body[:400] or b"methodResponse" in a.body[:200]):
        root = etree.fromstring(a.body, SAFE)
        if etree.QName(root).localname == "Envelope":
            el = root.find(f"{{{SOAP_ENV}}}Body")[0]  # type: ignore[index]
            if etree.QName(el).localname == "Fault":
                code = el.findtext("faultcode") or ""
                assert code.split(":")[-1].startswith("Client"), f"not a Client fault: {code} {el.findtext('faultstring')!r}"
                one_line(el.findtext("faultstring"), "faultstring")
                return "fault"
            status = int(el.findtext("status") or 0)
            if status == 200:
                assert may_succeed, f"accepted: {a.text[:300]}"
                return "ok"
            one_line(el.findtext("statusMessage"), "statusMessage")
            return f"status {status}"
        fault = root.find("fault")
        if fault is not None:
            members = {m.findtext("name"): m.find("value") for m in fault.iter("member")}
            one_line("".join(members["faultString"].itertext()), "faultString")
            return "xmlrpc fault"
        if not may_succeed:
            # system.multicall answers an array: every entry must then be a fault struct.
            entries = root.findall("./params/param/value/array/data/value")
            assert entries and all(e.find("struct") is not None for e in entries), a.text[:300]
            for e in entries:
                names = [m.findtext("name") for m in e.iter("member")]
                assert "faultString" in names, a.text[:300]
            return "multicall faults"
        return "ok"
    if a.status < 400:
        assert may_succeed, f"accepted: {a.status} {a.text[:300]}"
        return "ok"
    assert 400 <= a.status < 500, (a.status, a.text[:300])
    return f"http {a.status}"
