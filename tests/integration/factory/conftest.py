"""Fixtures for factory tests against real LibreOffice: one warm pool per session, generated documents.

LibreOffice missing skips these tests on a laptop but FAILS them when CI=true.
"""

from __future__ import annotations

import os
import shutil
import threading
import xmlrpc.client
import xmlrpc.server
from pathlib import Path

import pytest

from app.factory.converters import uno_available
from app.factory.office import OfficePool

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

NS = (
    'xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
    'xmlns:style="urn:oasis:names:tc:opendocument:xmlns:style:1.0" '
    'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" '
    'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" '
    'xmlns:draw="urn:oasis:names:tc:opendocument:xmlns:drawing:1.0" '
    'xmlns:fo="urn:oasis:names:tc:opendocument:xmlns:xsl-fo-compatible:1.0" '
    'xmlns:svg="urn:oasis:names:tc:opendocument:xmlns:svg-compatible:1.0"'
)


def flat_odt(pages: int) -> str:
    """A text document of `pages` A4 pages: one paragraph per page, page breaks before 2..n."""
    paras = "".join(
        f'<text:p text:style-name="{"Break" if i else "Standard"}">Page {i + 1}</text:p>'
        for i in range(pages)
    )
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><office:document {NS} office:version="1.3" '
        'office:mimetype="application/vnd.oasis.opendocument.text"><office:automatic-styles>'
        '<style:style style:name="Break" style:family="paragraph">'
        '<style:paragraph-properties fo:break-before="page"/></style:style></office:automatic-styles>'
        f"<office:body><office:text>{paras}</office:text></office:body></office:document>"
    )


def flat_ods(pages: int) -> str:
    """A spreadsheet of `pages` sheets, each printing on one page."""
    sheets = "".join(
        f'<table:table table:name="S{i + 1}"><table:table-row><table:table-cell office:value-type="string">'
        f"<text:p>Sheet {i + 1}</text:p></table:table-cell></table:table-row></table:table>"
        for i in range(pages)
    )
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><office:document {NS} office:version="1.3" '
        'office:mimetype="application/vnd.oasis.opendocument.spreadsheet">'
        f"<office:body><office:spreadsheet>{sheets}</office:spreadsheet></office:body></office:document>"
    )


def flat_odp(pages: int) -> str:
    """A presentation of `pages` slides."""
    slides = "".join(
        f'<draw:page draw:name="p{i + 1}"><draw:frame svg:x="2cm" svg:y="2cm" svg:width="10cm" '
        f'svg:height="3cm"><draw:text-box><text:p>Slide {i + 1}</text:p></draw:text-box></draw:frame></draw:page>'
        for i in range(pages)
    )
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><office:document {NS} office:version="1.3" '
        'office:mimetype="application/vnd.oasis.opendocument.presentation">'
        f"<office:body><office:presentation>{slides}</office:presentation></office:body></office:document>"
    )


FLAT = {"odt": (flat_odt, "writer8"), "ods": (flat_ods, "calc8"), "odp": (flat_odp, "impress8")}


def libreoffice_missing() -> str | None:
    for tool in ("soffice", "pdfinfo", "pdftoppm"):
        if not shutil.which(tool):
            return f"{tool} is not installed (run scripts/install-libreoffice.sh)"
    if not uno_available():
        return "/usr/bin/python3 cannot import uno (install python3-uno)"
    return None


@pytest.fixture(scope="session")
def libreoffice_required() -> None:
    missing = libreoffice_missing()
    if missing:
        if IN_CI:
            pytest.fail(f"{missing} (CI=true: LibreOffice is required)")
        pytest.skip(missing)


@pytest.fixture(scope="session")
def lo_pool(libreoffice_required, tmp_path_factory) -> OfficePool:
    """Two warm instances shared by the session (tests that break an instance restore it)."""
    pool = OfficePool(2, workdir=tmp_path_factory.mktemp("lo-pool"), restart_every=0)
    pool.start()
    yield pool
    pool.close()


@pytest.fixture(scope="session")
def odf_docs(lo_pool, tmp_path_factory) -> dict[str, bytes]:
    """Five-page odt, ods and odp documents, made from flat ODF by LibreOffice itself."""
    base = tmp_path_factory.mktemp("docs")
    docs = {}
    with lo_pool.instance() as inst:
        for doctype, (make, odf_filter) in FLAT.items():
            flat = base / f"five.f{doctype}"
            flat.write_text(make(5), encoding="utf-8")
            out = base / f"five.{doctype}"
            reply = inst.call({"input": str(flat), "output": str(out), "filter": odf_filter}, 60)
            assert reply["ok"], reply
            docs[doctype] = out.read_bytes()
    return docs


class FakeServer:
    """A real XML-RPC server on a socket that hands out scripted jobs and records the factory's calls."""

    def __init__(self, name: str, secret: str):
        self.name, self.secret = name, secret
        self.jobs: list[dict] = []
        self.calls: list[tuple] = []
        self.auth_headers: list[str | None] = []
        outer = self

        class Handler(xmlrpc.server.SimpleXMLRPCRequestHandler):
            rpc_paths = ("/xmlrpc",)

            def decode_request_content(self, data):
                outer.auth_headers.append(self.headers.get("Authorization"))
                return super().decode_request_content(data)

            def log_message(self, *args):
                pass

        self.server = xmlrpc.server.SimpleXMLRPCServer(
            ("127.0.0.1", 0), Handler, logRequests=False, allow_none=False
        )
        self.server.register_function(self.poll, "jobs.poll")
        self.server.register_function(self.extend, "jobs.extend")
        self.server.register_function(self.finish, "jobs.finish")
        self.server.register_function(self.fail, "jobs.fail")
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def poll(self, name):
        self.calls.append(("poll", name))
        return self.jobs.pop(0) if self.jobs else {}

    def extend(self, name, job, lease=""):
        self.calls.append(("extend", name, job, lease))
        return {"leaseExpires": xmlrpc.client.DateTime("20991231T00:00:00"), "cancelled": False}

    def finish(self, name, job, fmt, document, lease=""):
        self.calls.append(("finish", name, job, fmt, document.data, lease))
        return "result-" + job

    def fail(self, name, job, reason, lease=""):
        self.calls.append(("fail", name, job, reason, lease))
        return {"jobStatus": 0}


@pytest.fixture
def fake_server():
    srv = FakeServer("factory one", "top secret")
    srv.thread.start()
    yield srv
    srv.server.shutdown()
    srv.server.server_close()


@pytest.fixture(scope="session")
def examples_dir() -> Path:
    return Path(__file__).resolve().parents[3] / "examples" / "factory"
