"""Helpers for the XML-RPC tests: proxies with HTTP Basic in the URL, raw HTTP posts."""

from __future__ import annotations

import base64
import socket
import xmlrpc.client
from urllib.parse import quote, urlsplit

FACTORY = "My factory"
SECRET = "factory-secret-1"


def proxy(url: str, name: str = FACTORY, secret: str = SECRET, **kw: object) -> xmlrpc.client.ServerProxy:
    """A stock ServerProxy, credentials in the URL (percent-encoded: the seed's name has a space)."""
    host = url.split("://", 1)[1]
    return xmlrpc.client.ServerProxy(f"http://{quote(name)}:{quote(secret)}@{host}/xmlrpc", **kw)  # type: ignore[arg-type]


def basic(name: str = FACTORY, secret: str = SECRET) -> str:
    return "Basic " + base64.b64encode(f"{name}:{secret}".encode()).decode()


def raw_post(url: str, body: bytes, headers: dict[str, str] | None = None, *, request_line: str = "POST /xmlrpc HTTP/1.0") -> tuple[int, dict[str, str], bytes]:
    """Send exactly these bytes over a socket (HTTP/1.0: the server closes); return status, headers, body."""
    parts = urlsplit(url)
    hdrs = {"Host": "example.org", "Content-Type": "text/xml", "Content-Length": str(len(body))}
    hdrs.update(headers or {})
    head = request_line + "\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items()) + "\r\n"
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(head.encode("latin-1") + body)
        raw = b""
        while b"\r\n\r\n" not in raw:
            data = sock.recv(1 << 16)
            if not data:
                break
            raw += data
        head_b, _, payload = raw.partition(b"\r\n\r\n")
        lines = head_b.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        out = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            out[k.strip().lower()] = v.strip()
        # Read exactly Content-Length (a server may keep reading our side until we close).
        want = int(out.get("content-length", "-1"))
        chunks = [payload]
        got = len(payload)
        while want < 0 or got < want:
            data = sock.recv(1 << 20)
            if not data:
                break
            chunks.append(data)
            got += len(data)
    return status, out, b"".join(chunks)


def call_body(method: str, *params: object) -> bytes:
    return xmlrpc.client.dumps(tuple(params), method).encode()


