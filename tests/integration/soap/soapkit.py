"""SOAP test helpers: raw posts over a socket, XML shape comparison, the seed's examples."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

import requests
from lxml import etree

from protocol.soap import NS, PATH
from tests.conftest import LiveServer

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
SEED = Path(__file__).with_name("seed_003_contentservice.txt")
SAFE = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)


def envelope(
    op: str,
    fields: list[tuple[str, object]] | None = None,
    *,
    client: str = "petshow",
    secret: str = "Wf",
    qualified: bool = False,
) -> str:
    """A request in the seed's style: `ns2:<op>Request` with unqualified children (or qualified ones)."""
    pre = "ns2:" if qualified else ""
    items = [("clientApplicationId", client), ("clientApplicationCredentials", secret), *(fields or [])]
    kids = "".join(f"<{pre}{k}>{escape(str(v))}</{pre}{k}>" for k, v in items)
    return (
        f'<soap:Envelope xmlns:soap="{SOAP_ENV}"><soap:Body>'
        f'<ns2:{op}Request xmlns:ns2="{NS}">{kids}</ns2:{op}Request>'
        "</soap:Body></soap:Envelope>"
    )


@dataclass
class Reply:
    http: int
    text: str
    root: etree._Element

    @property
    def body(self) -> etree._Element:
        return self.root.find(f"{{{SOAP_ENV}}}Body")[0]  # type: ignore[index]

    @property
    def is_fault(self) -> bool:
        return etree.QName(self.body).localname == "Fault"

    def get(self, name: str) -> str | None:
        el = self.body.find(name)
        return None if el is None else el.text

    @property
    def status(self) -> int:
        return int(self.get("status"))  # type: ignore[arg-type]


def post(server: LiveServer, xml: str | bytes, *, timeout: float = 60) -> Reply:
    data = xml.encode() if isinstance(xml, str) else xml
    r = requests.post(
        server.url + PATH, data=data, headers={"Content-Type": "text/xml; charset=utf-8"}, timeout=timeout
    )
    return Reply(r.status_code, r.text, etree.fromstring(r.content, SAFE))


def call(server: LiveServer, op: str, fields: list[tuple[str, object]] | None = None, **kw: object) -> Reply:
    return post(server, envelope(op, fields, **kw))  # type: ignore[arg-type]


def shape(el: etree._Element) -> tuple:
    """(local name, children's shapes): names, nesting and order; prefixes and values ignored."""
    return (etree.QName(el).localname, tuple(shape(c) for c in el if isinstance(c.tag, str)))


def seed_examples() -> dict[str, dict[str, str]]:
    """operation -> {"request": xml, "response": xml} from the seed, with its listed typos fixed."""
    text = SEED.read_text()
    # SPEC: the getContentConvertsPerState example closes <jobStatus> with </count> and <jobId> with </jobStatus>.
    text = re.sub(r"<jobStatus>(\d+)</count>", r"<jobStatus>\1</jobStatus>", text)
    text = re.sub(r"<jobId>(\d+)</jobStatus>", r"<jobId>\1</jobId>", text)
    blocks = re.findall(r"<soap:Envelope.*?</soap:Envelope>", text, flags=re.S)
    out: dict[str, dict[str, str]] = {}
    for block in blocks:
        m = re.search(r"<ns2:(\w+?)(Request|Response)\b", block)
        assert m, block
        out.setdefault(m.group(1), {})[m.group(2).lower()] = block
    return out
