"""Peak server memory for a SOAP contentUpload and a getContentConvertResult of an N MiB document.

Same harness as bench_xmlrpc.py: the real WSGI app in a subprocess, peak RSS reset before each call
(/proc/PID/clear_refs = 5) and VmHWM read after it; the client streams both ways. The upload goes as
`content` parts of 7,499,997 bytes (under libxml2's 10,000,000-character text node); the factory's
side (claim, finish with an N MiB result) runs through the services in this process.

    .venv/bin/python bench/bench_soap_large.py [--mib 100] [--database-url URL]

Prints the numbers and writes bench/results/soap_large.json.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_xmlrpc import NAME, SECRET, call, reset_peak, stage, status  # noqa: E402

NS = "http://www.yospace.com/tundra/ContentService/"
PATH = "/cds-controller/contentService"
PART = 7_499_997  # a multiple of 3: each part's base64 stands alone


def envelope(op: str, inner: str = "") -> tuple[bytes, bytes]:
    head = (
        '<?xml version="1.0" encoding="UTF-8"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/">'
        f'<s:Body><cs:{op}Request xmlns:cs="{NS}"><clientApplicationId>petshow</clientApplicationId>'
        f"<clientApplicationCredentials>Wf</clientApplicationCredentials>{inner}"
    ).encode()
    return head, f"</cs:{op}Request></s:Body></s:Envelope>".encode()


def small(port: int, op: str, inner: str) -> bytes:
    head, tail = envelope(op, inner)
    _, reply = call(port, [head + tail], len(head + tail), path=PATH, auth=False)
    assert b"<status>200</status>" in reply, reply[:800]
    return reply


def field(reply: bytes, name: str) -> str:
    return reply.split(f"<{name}>".encode())[1].split(f"</{name}>".encode())[0].decode()


def main() -> None:
    st = stage(__doc__ or "")
    n, db_url, rt, proc = st.n, st.db_url, st.rt, st.proc
    from app.services import leases
    from app.services.poll import poll

    max_bytes = max(n, 1) * 1024 * 1024
    doc = os.urandom(max_bytes)
    mib = 1024 * 1024
    try:
        port, pid = st.ready()
        small(port, "getContentConvertCounts", "")  # warm-up: imports, auth cache, first connection
        time.sleep(0.5)
        idle = status(pid)["VmRSS"]

        head, tail = envelope("contentUpload")
        parts = [head]
        for i in range(0, len(doc), PART):
            parts += [b"<content>", base64.b64encode(doc[i : i + PART]), b"</content>"]
        parts += [b"<filename>big.odt</filename>", tail]
        length = sum(len(p) for p in parts)
        reset_peak(pid)
        t0 = time.perf_counter()
        _, reply = call(port, parts, length, path=PATH, auth=False)
        upload_s = time.perf_counter() - t0
        upload_peak = status(pid)["VmHWM"]
        assert b"<status>200</status>" in reply, reply[:800]
        ident = field(reply, "contentIdentifier")
        del parts

        reply = small(
            port,
            "contentConvert",
            f"<contentIdentifier>{ident}</contentIdentifier><application>LibreOffice Writer</application>"
            "<version>7.4</version><format>pdf</format>",
        )
        job_id = int(field(reply, "jobId"))
        with rt.db.read_session() as s:
            factory = rt.auth.factory(s, NAME, SECRET, rt.now())
        claimed = poll(rt.db, rt.now(), rt.policy, rt.mirror, factory)
        assert claimed is not None and claimed.id == job_id
        with rt.db.session() as s:
            leases.finish(
                s, rt.now(), rt.notifier, guid=claimed.guid, owner=NAME, token=claimed.lease_token, fmt="pdf",
                parts=doc, max_bytes=max_bytes,
            )

        head, tail = envelope("getContentConvertResult", f"<jobId>{job_id}</jobId>")
        before_result = status(pid)["VmRSS"]  # the allocator may keep what the upload freed
        reset_peak(pid)
        t0 = time.perf_counter()
        size, reply = call(port, [head + tail], len(head + tail), path=PATH, auth=False)
        result_s = time.perf_counter() - t0
        result_peak = status(pid)["VmHWM"]
        assert b"<status>200</status>" in reply, reply[:800]
        assert size > len(doc) * 4 // 3, size
    finally:
        proc.terminate()
        proc.wait(10)

    res = {
        "document_mib": n,
        "database": db_url.split(":", 1)[0],
        "server": st.label,
        "idle_rss_mib": round(idle / mib, 1),
        "upload_peak_over_idle_mib": round((upload_peak - idle) / mib, 1),
        "upload_request_bytes": length,
        "upload_seconds": round(upload_s, 2),
        "rss_before_result_mib": round(before_result / mib, 1),
        "result_peak_over_idle_mib": round((result_peak - idle) / mib, 1),
        "result_peak_over_before_mib": round((result_peak - before_result) / mib, 1),
        "result_response_bytes": size,
        "result_seconds": round(result_s, 2),
    }
    for k, v in res.items():
        print(f"{k:28} {v}")
    out = ROOT / "bench" / "results" / "soap_large.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
