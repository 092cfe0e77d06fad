"""Peak server memory for one jobs.poll and one jobs.finish of an N MiB document.

Runs the real WSGI app in a subprocess (werkzeug, threaded; or, with --server web, `convhub web
--workers 1` under granian, measuring its one worker), submits an N MiB job through the
services, then for each call resets the server's peak RSS (/proc/PID/clear_refs = 5) and reads
VmHWM afterwards. The client streams both ways, so only the server's memory is measured.

    .venv/bin/python bench/bench_xmlrpc.py [--mib 100] [--database-url URL] [--server werkzeug|web]

Prints the numbers and writes bench/results/xmlrpc.json. Target: peak - idle < 4 x N MiB.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SERVER = r"""
import sys
from pathlib import Path
from werkzeug.serving import make_server
from app.config import Settings
from app.runtime import build_runtime
from app.web import create_app
data = Path(sys.argv[1])
rt = build_runtime(Settings(data_dir=data, database_url=sys.argv[2]), broker=False)
srv = make_server("127.0.0.1", 0, create_app(rt), threaded=True)
print(srv.server_port, flush=True)
srv.serve_forever()
"""

NAME, SECRET = "bench factory", "bench-secret"
AUTH = "Basic " + base64.b64encode(f"{NAME}:{SECRET}".encode()).decode()


def status(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS", "VmHWM")):
            k, v = line.split(":")
            out[k] = int(v.split()[0]) * 1024
    return out


def reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # resets VmHWM to the current RSS


def call(port: int, body_parts: list[bytes] | None, length: int, path: str = "/xmlrpc", auth: bool = True) -> tuple[int, bytes]:
    """POST the parts (streamed), read the response away; return its size and its first 4 KiB."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    conn.putrequest("POST", path)
    headers = [("Content-Type", "text/xml"), ("Content-Length", str(length))] + ([("Authorization", AUTH)] if auth else [])
    for k, v in headers:
        conn.putheader(k, v)
    conn.endheaders()
    for part in body_parts or []:
        conn.send(part)
    resp = conn.getresponse()
    head = resp.read(4096)
    total = len(head)
    while chunk := resp.read(1 << 20):  # stream the response away: the client keeps nothing
        total += len(chunk)
    conn.close()
    return total, head


def xml_call(method: str, *params: str) -> bytes:
    ps = "".join(f"<param><value><string>{p}</string></value></param>" for p in params)
    return f"<?xml version='1.0'?><methodCall><methodName>{method}</methodName><params>{ps}</params></methodCall>".encode()


@dataclass
class Stage:
    """A scratch database with the bench client (petshow) and factory, and the server process."""

    n: int
    tmp: Path
    db_url: str
    rt: Any
    cid: int
    proc: subprocess.Popen  # type: ignore[type-arg]
    server: str = "werkzeug"
    web_port: int = 0

    def ready(self) -> tuple[int, int]:
        """(port, pid of the process that serves) once the server answers."""
        if self.server == "werkzeug":
            return int(self.proc.stdout.readline()), self.proc.pid  # type: ignore[union-attr]
        import urllib.request

        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.web_port}/healthz", timeout=5)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        kids = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and _ppid(p) == self.proc.pid]
        assert len(kids) == 1, kids  # granian's one worker
        return self.web_port, kids[0]

    @property
    def label(self) -> str:
        return "werkzeug threaded, subprocess" if self.server == "werkzeug" else "convhub web (granian, 1 worker x 8 threads)"


def _ppid(p: Path) -> int:
    try:
        return int((p / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return -1


def stage(description: str) -> Stage:
    """Parse --mib/--database-url, migrate a scratch database, register the bench client and factory,
    and start the real WSGI app in a subprocess (its port is read from its first line of output)."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--mib", type=int, default=100)
    ap.add_argument("--database-url", default="")
    ap.add_argument("--server", choices=["werkzeug", "web"], default="werkzeug")
    args = ap.parse_args()
    n = args.mib
    tmp = Path(tempfile.mkdtemp(prefix="convhub-bench-"))
    db_url = args.database_url or f"sqlite:///{tmp / 'convhub.db'}"

    from app.config import Settings
    from app.db.migrate import upgrade
    from app.runtime import build_runtime

    upgrade(db_url)
    max_bytes = max(n, 1) * 1024 * 1024
    rt = build_runtime(Settings(data_dir=tmp, database_url=db_url, max_document_bytes=max_bytes), broker=False)
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import add_client, add_factory  # type: ignore[import-not-found]

    cid = add_client(rt)
    add_factory(rt, NAME, SECRET)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    server_code = SERVER.replace(
        "Settings(data_dir=data, database_url=sys.argv[2])",
        f"Settings(data_dir=data, database_url=sys.argv[2], max_document_bytes={max_bytes})",
    )
    if args.server == "web":
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        env.update(CONVHUB_DATA_DIR=str(tmp), CONVHUB_DATABASE_URL=db_url, CONVHUB_MAX_DOCUMENT_BYTES=str(max_bytes))
        proc = subprocess.Popen([sys.executable, "-m", "app.cli", "web", "--port", str(port), "--workers", "1"], env=env)
        return Stage(n, tmp, db_url, rt, cid, proc, "web", port)
    proc = subprocess.Popen([sys.executable, "-c", server_code, str(tmp), db_url], stdout=subprocess.PIPE, env=env)
    return Stage(n, tmp, db_url, rt, cid, proc)


def main() -> None:
    st = stage(__doc__ or "")
    n, db_url, rt, proc = st.n, st.db_url, st.rt, st.proc
    from conftest import submit_job  # type: ignore[import-not-found]

    block = os.urandom(1 << 20)
    submit_job(rt, st.cid, block * n, fmt="pdf")
    try:
        port, pid = st.ready()
        body = xml_call("system.listMethods")
        call(port, [body], len(body))  # warm-up: imports, auth cache, first connection
        time.sleep(0.5)
        idle = status(pid)["VmRSS"]

        reset_peak(pid)
        body = xml_call("jobs.poll", NAME)
        t0 = time.perf_counter()
        size, head = call(port, [body], len(body))
        poll_s = time.perf_counter() - t0
        poll_peak = status(pid)["VmHWM"]
        text = head.decode("utf-8", "replace")
        guid = text.split("<name>job</name>")[1].split("<string>")[1].split("</string>")[0]

        # jobs.finish with an ~N MiB result, sent as xmlrpc.client.Binary would (base64 + newlines),
        # built from blocks of a multiple of 3 bytes so their encodings concatenate.
        head_b = (f"<?xml version='1.0'?><methodCall><methodName>jobs.finish</methodName><params>"
                  f"<param><value><string>{NAME}</string></value></param><param><value><string>{guid}</string></value></param>"
                  f"<param><value><string>pdf</string></value></param><param><value><base64>").encode()
        tail_b = b"</base64></value></param></params></methodCall>"
        block3 = block[: (len(block) // 3) * 3]
        encoded = base64.encodebytes(block3)
        parts = [head_b] + [encoded] * n + [tail_b]
        length = sum(len(p) for p in parts)
        reset_peak(pid)
        t0 = time.perf_counter()
        _, fhead = call(port, parts, length)
        finish_s = time.perf_counter() - t0
        finish_peak = status(pid)["VmHWM"]
        assert b"<fault>" not in fhead, fhead[:500]
    finally:
        proc.terminate()
        proc.wait(10)

    mib = 1024 * 1024
    res = {
        "document_mib": n,
        "database": db_url.split(":", 1)[0],
        "server": st.label,
        "idle_rss_mib": round(idle / mib, 1),
        "poll_peak_rss_mib": round(poll_peak / mib, 1),
        "poll_peak_over_idle_mib": round((poll_peak - idle) / mib, 1),
        "poll_response_bytes": size,
        "poll_seconds": round(poll_s, 2),
        "finish_peak_rss_mib": round(finish_peak / mib, 1),
        "finish_peak_over_idle_mib": round((finish_peak - idle) / mib, 1),
        "finish_request_bytes": length,
        "finish_seconds": round(finish_s, 2),
        "target_over_idle_mib": 4 * n,
    }
    for k, v in res.items():
        print(f"{k:28} {v}")
    out = ROOT / "bench" / "results" / "xmlrpc.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
