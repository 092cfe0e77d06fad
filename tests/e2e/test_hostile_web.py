"""The hostile corpus's HTTP framing cases (lying Content-Length both ways, chunked and truncated
bodies, over-limit bodies, method confusion, broken request lines) against `convhub web` itself:
granian's RSGI interface and app.web.bodies, which read every body before the app runs (the corpus
proper runs on an in-process werkzeug server). Plus every tenth other case, for the app behind it.

Asserted per case, as tests/hostile/test_corpus.py does: a refusal with one clear line (never a
traceback or SQL) and the database unchanged (the server's SQLite file, dumped from here). At the
end: the server's log holds no traceback, and well-formed requests are still served.

Unlike the corpus, the client never half-closes its side: granian (hyper) closes a connection whose
client shut its writing side before the answer was sent, so a body shorter than its Content-Length
is ended here by the body deadline (2 s in this test): 408 with one line.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.conftest import close_runtime, free_port, wait_for
from tests.e2e.test_serve import CONVHUB, _cli, _env, _get
from tests.hostile.conftest import seed
from tests.hostile.corpus import CASES, META, Case
from tests.hostile.kit import Target, check_clean, dump, send, soap, soap_body, xmlrpc, xmlrpc_body

# granian (hyper) reads a request head of up to its HTTP/1 buffer (400 KiB) where werkzeug refuses a
# 200 KB header line: that case is the in-process corpus's alone.
PICKED = [c for i, c in enumerate(CASES) if (c.id.startswith("http-") or i % 10 == 0) and c.id != "http-long-header"]


def well_formed_requests_succeed(target: Target) -> None:
    counts = send(target, soap(soap_body("getContentConvertCounts")), half_close=False)
    assert counts.status == 200 and b"<status>200</status>" in counts.body, counts.text[:300]
    methods = send(target, xmlrpc(xmlrpc_body("system.listMethods")), half_close=False)
    assert methods.status == 200 and b"jobs.poll" in methods.body and b"fault" not in methods.body, methods.text[:300]


@dataclass
class _Url:
    url: str


@pytest.fixture(scope="module")
def web_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    from app.config import load_settings
    from app.runtime import build_runtime

    tmp = tmp_path_factory.mktemp("hostile-web")
    env = _env(tmp / "var")
    env["CONVHUB_AUTH_THROTTLE_PER_NAME"] = env["CONVHUB_AUTH_THROTTLE_PER_ADDRESS"] = "0"  # as the corpus runs
    env["CONVHUB_OPERATOR_USER"], env["CONVHUB_OPERATOR_PASSWORD"] = "admin", "op-secret-hostile"
    env["CONVHUB_WEB_BODY_TIMEOUT_SECONDS"] = "2"
    _cli(env, "db", "upgrade")
    rt = build_runtime(load_settings(env), broker=False)
    jobs, my_content, their_content = seed(rt)
    port = free_port()
    log_path = tmp / "web.log"
    log = log_path.open("w")
    proc = subprocess.Popen(CONVHUB + ["web", "--port", str(port), "--workers", "1", "--threads", "4"], env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _get(base + "/healthz")[0] == 200, 90, "healthz")
        target = Target(_Url(base), rt, "sqlite", jobs=jobs, my_content=my_content, their_content=their_content)
        well_formed_requests_succeed(target)
        yield target
        well_formed_requests_succeed(target)
        assert proc.poll() is None
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
        close_runtime(rt)
    text = log_path.read_text(errors="replace")
    assert "Traceback" not in text, text[-3000:]


@pytest.mark.parametrize("case", PICKED, ids=[c.id for c in PICKED])
def test_hostile_case_on_convhub_web(web_target, case: Case):
    before = dump(web_target.rt)
    answer = send(web_target, case.build(web_target), half_close=False)
    check_clean(answer, may_succeed=case.read_only, echo=META.values())
    assert dump(web_target.rt) == before, "a rejected request changed the database"
