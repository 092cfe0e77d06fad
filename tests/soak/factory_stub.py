"""A factory for the soak: the reference loop's shape (poll -> convert -> finish, retrying a finish whose
answer was lost) with a stub converter whose result is derived from the document, so a hash check of
every result means something.

Run as ``python -m tests.soak.factory_stub URL NAME SECRET_FILE STOP_FILE EVENTS_FILE``. Every step is
one JSON line in EVENTS_FILE, written before the step starts (so a process killed mid-step leaves
the step as its last line) and flushed at once: "poll", "idle" (the poll found nothing), "handout" (job, lease token, leaseExpires,
the poll's send time), "converting", "finishing" (result size), "finished" (an accepted finish),
"finish_fault" (a refused one), "finish_error" / "poll_error" (the answer was lost). The soak's
killer watches these lines to time its kills; the checks read them to prove the lease rules.
The secret is read from a file and sent in a header, never put in a URL, so no error text carries it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import re
import sys
import time
import xmlrpc.client
from pathlib import Path
from typing import Any

CONVERT_SECONDS = 0.02  # long enough for the killer to catch a factory mid-conversion
FINISH_RETRY_WAITS = (0.2, 0.4, 0.8, 1.6, 3.0, 3.0, 3.0, 3.0, 3.0)  # covers a web server's restart

_SIZE = re.compile(rb"result-size (\d+)\n")


def document(tag: str, index: int, result_size: int) -> bytes:
    """Job `index`'s document: distinct per job, and it says how large its result is."""
    pad = random.Random(f"{tag}/{index}").randbytes(64).hex().encode()
    return f"convhub soak {tag} #{index} result-size {result_size}\n".encode() + pad


def result_for(doc: bytes) -> bytes:
    """The stub conversion: bytes that only this document yields, of the size the document asks for."""
    digest = hashlib.sha256(doc).digest()
    head = b"%PDF-soak " + digest.hex().encode() + b"\n"
    m = _SIZE.search(doc)
    size = int(m.group(1)) if m else 1024
    return head + random.Random(digest).randbytes(max(0, size - len(head)))


class _AuthTransport(xmlrpc.client.Transport):
    def __init__(self, name: str, secret: str) -> None:
        super().__init__()
        self._auth = "Basic " + base64.b64encode(f"{name}:{secret}".encode()).decode()

    def send_headers(self, connection: Any, headers: list[tuple[str, str]]) -> None:
        super().send_headers(connection, [*headers, ("Authorization", self._auth)])


def _document_bytes(value: Any) -> bytes:
    if isinstance(value, xmlrpc.client.Binary):
        return bytes(value.data)
    if isinstance(value, bytes):
        return value
    return base64.b64decode(value or "")


def _why(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc)[:200]}"


def main(argv: list[str]) -> int:
    url, name, secret_file, stop_file, events_file = argv
    secret = Path(secret_file).read_text().strip()
    proxy = xmlrpc.client.ServerProxy(url + "/xmlrpc", transport=_AuthTransport(name, secret), allow_none=True)
    out = open(events_file, "a", buffering=1)  # noqa: SIM115 - one line per event, for the life of the process

    def event(kind: str, **fields: Any) -> None:
        out.write(json.dumps({"ev": kind, "t": time.time(), **fields}) + "\n")

    event("start", pid=os.getpid())
    while True:
        t0 = time.time()
        event("poll")
        try:
            job = proxy.jobs.poll(name)
        except xmlrpc.client.Fault as f:
            event("poll_fault", code=f.faultCode, msg=str(f.faultString)[:200])
            time.sleep(0.2)
            continue
        except Exception as exc:  # the server restarts under the soak: try again shortly
            event("poll_error", err=_why(exc))
            time.sleep(0.2)
            continue
        if not job:
            if os.path.exists(stop_file):
                event("stop")
                return 0
            event("idle")  # so that a last event "poll" means a poll in flight
            time.sleep(0.05)
            continue
        guid, lease = job["job"], job["lease"]
        event("handout", job=guid, lease=lease, exp=str(job["leaseExpires"]), attempt=job["attempt"], t0=t0)
        event("converting", job=guid, attempt=job["attempt"])
        time.sleep(CONVERT_SECONDS)
        body = result_for(_document_bytes(job["document"]))
        event("finishing", job=guid, lease=lease, size=len(body))
        for tries, wait in enumerate((*FINISH_RETRY_WAITS, None), start=1):
            try:
                proxy.jobs.finish(name, guid, job["format"] or "pdf", xmlrpc.client.Binary(body), lease)
            except xmlrpc.client.Fault as f:
                event("finish_fault", job=guid, lease=lease, code=f.faultCode, msg=str(f.faultString)[:200], tries=tries)
                break
            except Exception as exc:
                event("finish_error", job=guid, lease=lease, err=_why(exc), tries=tries)
                if wait is None:
                    event("abandoned", job=guid, lease=lease)
                    break
                time.sleep(wait)
            else:
                event("finished", job=guid, lease=lease, tries=tries)
                break


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
