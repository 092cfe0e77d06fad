"""docker/compose.yaml as it runs: every check goes from the host through the published ports
(127.0.0.1 only), as a user of the stack would. scripts/test-docker.sh builds the images, brings the
stack up, runs this module and tears the stack down; it passes the addresses and secrets in:

  CONVHUB_STACK_URL          the proxy, e.g. http://127.0.0.1:18080
  CONVHUB_STACK_FLOWER_URL   Flower, e.g. http://127.0.0.1:15555
  CONVHUB_STACK_PROJECT      the compose project name (container names and labels)
  CONVHUB_CLIENT, CONVHUB_CLIENT_SECRET, CONVHUB_OPERATOR_USER, CONVHUB_OPERATOR_PASSWORD, FACTORY_NAME

Waiting is polling with deadlines (the stack is starting); nothing asserts on a fixed sleep.
Each test prints one line of what it checked (shown with -s; the script passes -rA).
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
import zeep

from tests.conftest import wait_for
from tests.factorykit import pdf_pages, png_size

URL = os.environ.get("CONVHUB_STACK_URL", "").rstrip("/")
FLOWER = os.environ.get("CONVHUB_STACK_FLOWER_URL", "").rstrip("/")
PROJECT = os.environ.get("CONVHUB_STACK_PROJECT", "")
CLIENT = os.environ.get("CONVHUB_CLIENT", "")
CLIENT_SECRET = os.environ.get("CONVHUB_CLIENT_SECRET", "")
OPERATOR = (os.environ.get("CONVHUB_OPERATOR_USER", "admin"), os.environ.get("CONVHUB_OPERATOR_PASSWORD", ""))
FACTORY = os.environ.get("FACTORY_NAME", "factory-1")
SOAP_PATH = "/cds-controller/contentService"
STARTUP = float(os.environ.get("CONVHUB_STACK_STARTUP_SECONDS", "300"))
CONVERSION = float(os.environ.get("CONVHUB_STACK_CONVERSION_SECONDS", "300"))
WRITER = ("LibreOffice Writer", "7.4")
PAIR_QUEUE = "convert.libreoffice-writer.7-4"

ODF_NS = (
    'xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
    'xmlns:style="urn:oasis:names:tc:opendocument:xmlns:style:1.0" '
    'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" '
    'xmlns:fo="urn:oasis:names:tc:opendocument:xmlns:xsl-fo-compatible:1.0"'
)


def paged_odt(pages: int) -> bytes:
    """A packaged ODF text of `pages` pages: one paragraph "Page N" per page, a page break before 2..n."""
    paras = "".join(
        f'<text:p text:style-name="{"Break" if i else "Standard"}">Page {i + 1}</text:p>' for i in range(pages)
    )
    content = (
        f'<?xml version="1.0" encoding="UTF-8"?><office:document-content {ODF_NS} office:version="1.3">'
        '<office:automatic-styles><style:style style:name="Break" style:family="paragraph">'
        '<style:paragraph-properties fo:break-before="page"/></style:style></office:automatic-styles>'
        f"<office:body><office:text>{paras}</office:text></office:body></office:document-content>"
    )
    manifest = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<manifest:manifest xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0" manifest:version="1.3">'
        '<manifest:file-entry manifest:full-path="/" manifest:media-type="application/vnd.oasis.opendocument.text"/>'
        '<manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml"/>'
        "</manifest:manifest>"
    )
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(zipfile.ZipInfo("mimetype"), "application/vnd.oasis.opendocument.text", zipfile.ZIP_STORED)
        zf.writestr("META-INF/manifest.xml", manifest)
        zf.writestr("content.xml", content)
    return buf.getvalue()


def poll(pred: Callable[[], Any], timeout: float, what: str, interval: float = 2.0) -> Any:
    """`pred()` until truthy (returned), through the suite's one wait_for; connection errors mean "not yet"."""
    return wait_for(pred, timeout, what, interval, ignore=(requests.RequestException, OSError, zeep.exceptions.Error))


def say(line: str) -> None:
    print(f"checked: {line}", flush=True)


def containers() -> list[dict[str, Any]]:
    out = subprocess.run(
        ["podman", "ps", "-a", "--filter", f"label=io.podman.compose.project={PROJECT}", "--format", "json"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return json.loads(out or "[]")


def service_of(c: dict[str, Any]) -> str:
    return str((c.get("Labels") or {}).get("com.docker.compose.service", ""))


def creds() -> dict[str, str]:
    return {"clientApplicationId": CLIENT, "clientApplicationCredentials": CLIENT_SECRET}


@pytest.fixture(scope="module")
def up() -> str:
    """The proxy answers /healthz with 200 (init has migrated and both replicas can start)."""
    poll(lambda: requests.get(URL + "/healthz", timeout=5).status_code == 200, STARTUP, f"{URL}/healthz")
    return URL


@pytest.fixture(scope="module")
def svc(up: str) -> Any:
    client = zeep.Client(up + SOAP_PATH + "?wsdl")
    return client.service  # the WSDL's address is CONVHUB_PUBLIC_URL, the proxy's published port


def test_init_ran_and_every_service_runs(up: str) -> None:
    def state() -> dict[str, list[str]]:
        by: dict[str, list[str]] = {}
        for c in containers():
            by.setdefault(service_of(c), []).append(str(c.get("State")))
        return by

    want = {"postgres", "rabbitmq", "web", "proxy", "worker", "beat", "flower", "factory"}

    def all_running() -> dict[str, list[str]] | None:
        by = state()
        ok = all(by.get(s) and all(x == "running" for x in by[s]) for s in want)
        return by if ok else None

    by = poll(all_running, STARTUP, "every service running")
    assert len(by["web"]) == 2, by
    assert len(by["beat"]) == 1 and len(by["factory"]) == 1, by
    init = [c for c in containers() if service_of(c) == "init"]
    assert len(init) == 1 and init[0]["State"] == "exited" and init[0]["ExitCode"] == 0, init
    say(f"init exited 0; running: {', '.join(f'{s} x{len(by[s])}' for s in sorted(want))}")


def test_every_container_passes_its_own_healthcheck(up: str) -> None:
    """`podman healthcheck run`: the compose file's health checks, executed in each container."""
    results = {}
    for c in containers():
        if c.get("State") != "running":
            continue
        name = c["Names"][0]

        def healthy(name: str = name) -> bool:
            r = subprocess.run(["podman", "healthcheck", "run", name], capture_output=True, text=True, timeout=60)
            return r.returncode == 0

        poll(healthy, STARTUP, f"health check of {name}", interval=5)
        results[name] = "healthy"
    assert {service_of(c) for c in containers() if c["Names"][0] in results} >= {
        "postgres", "rabbitmq", "web", "proxy", "worker", "beat", "flower", "factory"
    }
    say(f"health checks pass in {len(results)} containers: {', '.join(sorted(results))}")


def test_healthz_through_the_proxy_reaches_both_web_replicas(up: str) -> None:
    for _ in range(12):
        r = requests.get(up + "/healthz", timeout=10)
        assert r.status_code == 200, r.text[:300]
    proxy = next(c["Names"][0] for c in containers() if service_of(c) == "proxy")
    web_ips = set()
    for c in containers():
        if service_of(c) == "web":
            info = json.loads(subprocess.run(["podman", "inspect", c["Names"][0]], capture_output=True, text=True,
                                             check=True, timeout=60).stdout)[0]
            web_ips |= {n["IPAddress"] for n in info["NetworkSettings"]["Networks"].values()}
    assert len(web_ips) == 2, web_ips

    def upstreams() -> set[str] | None:
        log = subprocess.run(["podman", "logs", proxy], capture_output=True, text=True, timeout=60)
        seen = set(re.findall(r'"GET /healthz HTTP/1\.1" 200 .* upstream=([0-9.]+):8080', log.stdout + log.stderr))
        return seen if seen >= web_ips else None

    seen = poll(upstreams, 30, f"both web replicas ({web_ips}) in the proxy's log")
    say(f"/healthz 200 x12 through the proxy, answered by both web replicas {sorted(seen)}")


def test_factory_registered_by_init_serves_libreoffice(svc: Any) -> None:
    def targets() -> list[tuple[str, str, str, str]] | None:
        r = svc.getConversionTargets(**creds())
        assert r.status == 200, (r.status, r.statusMessage)
        got = [(t.application, t.version, t.doctypes, t.formats) for t in r.conversionTarget or []]
        return got if any((a, v) == WRITER for a, v, _, _ in got) else None

    got = poll(targets, STARTUP, "the factory container polling (getConversionTargets)")
    assert ("LibreOffice Writer", "7.4", "odt", "odf,pdf,png") in got
    say(f"getConversionTargets over SOAP lists the factory's workers: {got}")


def test_odt_pages_2_3_over_soap_become_a_two_page_pdf(svc: Any) -> None:
    odt = paged_odt(5)
    up = svc.contentUpload(**creds(), content=[odt], filename="five-pages.odt")
    assert up.status == 200, (up.status, up.statusMessage)
    job = svc.contentConvert(
        **creds(),
        contentIdentifier=up.contentIdentifier,
        application=WRITER[0],
        version=WRITER[1],
        format="pdf",
        pageStart=2,
        pageEnd=3,
    )
    assert job.status == 200, (job.status, job.statusMessage)
    t0 = time.monotonic()

    def done() -> Any:
        st = svc.getContentConvertStatus(**creds(), jobId=job.jobId)
        assert st.status == 200, (st.status, st.statusMessage)
        assert st.jobStatus != 4, f"job FAILED: {st.failureReason}"
        return st if st.jobStatus == 3 else None

    st = poll(done, CONVERSION, f"job {job.jobId} COMPLETE")
    took = time.monotonic() - t0
    res = svc.getContentConvertResult(**creds(), jobId=job.jobId)
    assert res.status == 200, (res.status, res.statusMessage)
    assert res.format == "pdf"
    pdf = b"".join(res.content)
    assert pdf.startswith(b"%PDF-")
    assert pdf_pages(pdf) == 2
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "result.pdf"
        path.write_bytes(pdf)
        text = subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True,
                              check=True, timeout=60).stdout
        subprocess.run(["pdftoppm", "-png", "-r", "30", "-f", "1", "-l", "1", str(path), f"{tmp}/page"],
                       check=True, timeout=60)
        png = next(Path(tmp).glob("page*.png")).read_bytes()
    assert "Page 2" in text and "Page 3" in text and "Page 1" not in text and "Page 4" not in text, text
    width, height = png_size(png)
    assert height > width > 0  # A4 portrait
    say(
        f"SOAP upload of a 5-page ODT, convert pages 2-3 to PDF: job {job.jobId} ({st.jobGuid}) COMPLETE "
        f"in {took:.1f} s, {len(pdf)} bytes, pdfinfo: 2 pages, text 'Page 2','Page 3', page 1 renders {width}x{height}"
    )


def test_metrics_through_the_proxy(up: str) -> None:
    r = requests.get(up + "/metrics", timeout=30)
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/plain")
    line = re.search(
        r'^convhub_jobs\{application="LibreOffice Writer",state="COMPLETE",version="7.4"\} ([0-9.e+]+)$',
        r.text,
        flags=re.M,
    )
    assert line and float(line.group(1)) >= 1, r.text[:2000]
    say(f"/metrics 200 through the proxy ({len(r.text.splitlines())} lines), {line.group(0)}")


def test_flower_on_its_published_port() -> None:
    assert requests.get(FLOWER + "/api/workers", timeout=10).status_code == 401  # basic auth is on
    poll(lambda: requests.get(FLOWER + "/healthcheck", timeout=10).text == "OK", STARTUP, "Flower /healthcheck")

    def workers() -> dict[str, Any] | None:
        r = requests.get(FLOWER + "/api/workers", params={"refresh": "1"}, auth=OPERATOR, timeout=30)
        return r.json() if r.status_code == 200 and r.json() else None

    w = poll(workers, STARTUP, "a Celery worker in Flower")

    def queues() -> list[dict[str, Any]] | None:
        r = requests.get(FLOWER + "/api/queues/length", auth=OPERATOR, timeout=30)
        q = r.json().get("active_queues", []) if r.status_code == 200 else []
        return q if any(x.get("name") == PAIR_QUEUE for x in q) else None

    q = poll(queues, STARTUP, f"{PAIR_QUEUE} in Flower's broker view (RabbitMQ management API)")
    say(
        f"Flower: /healthcheck OK, 401 without credentials, workers {sorted(w)}, "
        f"queues from RabbitMQ: {sorted(x['name'] for x in q)}"
    )
