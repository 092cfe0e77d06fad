"""How long refusals and timeouts take: the durations the tests check functionally but do not time.

    .venv/bin/python bench/bench_timeouts.py [--out bench/results/timeouts.json]

Measures, each once (seconds, wall clock):
* every hostile XML-RPC body of tests/integration/xmlrpc/test_xmlrpc_hostile.py, refused with fault 400,
  and a SOAP billion-laughs document and an oversized SOAP body, refused with a Fault, by the real
  WSGI app in a subprocess (bench_xmlrpc's server);
* a hanging command converter with a 1 s timeout, killed with its children;
* `convhub factory run --once` with a hanging command (timeout 2 s) against that server: the whole run;
* with soffice installed: a SIGSTOPped LibreOffice instance at a 3 s deadline, killed and restarted.
Prints the numbers and writes them as JSON. Nothing here is asserted by the test suite.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xmlrpc.client
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/ is on the path as the script's folder

from bench_xmlrpc import SERVER

from app.factory.converters import CommandConverter
from app.factory.errors import ConversionTimeout
from tests.conftest import add_client, add_factory, submit_job
from tests.factorykit import tiny_odt
from tests.integration.soap.soapkit import envelope
from tests.integration.soap.test_soap_hardening import BOMB, _with_doctype
from tests.integration.xmlrpc.test_xmlrpc_hostile import HOSTILE
from tests.integration.xmlrpc.xrkit import FACTORY, SECRET, basic, raw_post

ROOT = Path(__file__).resolve().parents[1]
SOAP_PATH = "/cds-controller/contentService"
HANG_INI = """
[factory]
timeout = 2
[libreoffice]
enabled = no
[command:hang]
application = Hang
version = 1
doctypes = odt
formats = pdf
command = sleep 600
timeout = 2
"""


def timed(fn):  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    out = fn()
    return round(time.perf_counter() - t0, 3), out


def refusals(base: str, max_request_bytes: int) -> dict[str, float]:
    out: dict[str, float] = {}
    raw_post(base, b"<methodCall><methodName>system.listMethods</methodName></methodCall>", {"Authorization": basic()})
    for name, payload, words in HOSTILE:
        seconds, (status, _, body) = timed(lambda p=payload: raw_post(base, p, {"Authorization": basic()}))
        try:
            xmlrpc.client.loads(body)
        except xmlrpc.client.Fault as f:
            assert status == 200 and f.faultCode == 400 and words in f.faultString, (name, f.faultString)
        else:
            raise AssertionError(f"{name} was not refused")
        out[f"xmlrpc_{name}"] = seconds
    headers = {"Content-Type": "text/xml; charset=utf-8"}
    with requests.Session() as s:
        bomb = _with_doctype(BOMB, "&lol9;").encode()
        seconds, r = timed(lambda: s.post(base + SOAP_PATH, data=bomb, headers=headers, timeout=60))
        assert r.status_code == 500 and b"Fault" in r.content, r.text[:300]
        out["soap_billion_laughs"] = seconds
        big = envelope("getContentConvertCounts").encode() + b" " * (max_request_bytes + 1)
        seconds, r = timed(lambda: s.post(base + SOAP_PATH, data=big, headers=headers, timeout=60))
        assert r.status_code == 500 and b"exceeds" in r.content, r.text[:300]
        out["soap_oversized_body"] = seconds
    return out


def command_timeout(tmp: Path) -> float:
    conv = CommandConverter(
        "t", application="Tool", version="1", doctypes=["odt"], formats=["pdf"],
        command="sh -c 'sleep 60 & wait'", timeout=1,
    )
    job = {"job": "g", "doctype": "odt", "format": "pdf", "pageStart": 0, "pageEnd": 0,
           "document": base64.b64encode(tiny_odt()).decode()}
    t0 = time.perf_counter()
    try:
        conv.convert(job)
    except ConversionTimeout:
        return round(time.perf_counter() - t0, 3)
    raise AssertionError("the hanging command was not stopped")


def factory_once(base: str, tmp: Path, rt, cid: int) -> float:  # type: ignore[no-untyped-def]
    add_factory(rt, "hang-1", "hang-secret-1", workers=("Hang|1|odt|pdf",))
    submit_job(rt, cid, tiny_odt(), application="Hang", version="1")
    ini = tmp / "hang.ini"
    ini.write_text(HANG_INI, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVHUB_")}
    env["PYTHONPATH"] = str(ROOT)
    argv = [sys.executable, "-m", "app.cli", "factory", "run", "--config", str(ini), "--server", base,
            "--name", "hang-1", "--secret", "hang-secret-1", "--once"]
    seconds, out = timed(lambda: subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120))
    assert out.returncode == 0 and "did not finish within 2 s" in out.stderr, out.stderr[-2000:]
    return seconds


def libreoffice_stopped(tmp: Path) -> float | None:
    if not shutil.which("soffice"):
        return None
    from bench_factory import make_docs

    from app.factory.converters import LibreOfficeConverter
    from app.factory.office import OfficePool

    (tmp / "docs").mkdir()
    doc = make_docs(tmp / "docs", 1)[0]
    job = {"doctype": "odt", "format": "pdf", "document": base64.b64encode(doc.read_bytes()).decode()}
    with OfficePool(1, workdir=tmp / "office", restart_every=0) as pool:
        conv = LibreOfficeConverter(pool, timeout=60)
        pool.start()
        conv.convert(job)  # started and warm
        inst = pool.instances[0]
        os.killpg(inst.pid, signal.SIGSTOP)
        t0 = time.perf_counter()
        try:
            conv.convert(job, deadline_seconds=3)
        except ConversionTimeout:
            pass
        else:
            raise AssertionError("the stopped instance answered")
        return round(time.perf_counter() - t0, 3)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "timeouts.json"))
    args = ap.parse_args(argv)

    from app.config import Settings
    from app.db.migrate import upgrade
    from app.runtime import build_runtime

    tmp = Path(tempfile.mkdtemp(prefix="convhub-bench-"))
    db_url = f"sqlite:///{tmp / 'convhub.db'}"
    upgrade(db_url)
    settings = Settings(data_dir=tmp, database_url=db_url)
    rt = build_runtime(settings, broker=False)
    cid = add_client(rt)
    add_factory(rt, FACTORY, SECRET)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(tmp), db_url], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env
    )
    try:
        base = f"http://127.0.0.1:{int(proc.stdout.readline())}"  # type: ignore[union-attr]
        results: dict[str, object] = {"refusal_seconds": refusals(base, settings.max_request_bytes)}
        results["command_timeout_1s_seconds"] = command_timeout(tmp)
        results["factory_once_hang_timeout_2s_seconds"] = factory_once(base, tmp, rt, cid)
    finally:
        proc.terminate()
        proc.wait(10)
    results["libreoffice_stopped_deadline_3s_seconds"] = libreoffice_stopped(tmp)
    shutil.rmtree(tmp, ignore_errors=True)

    for key, value in results.items():
        if isinstance(value, dict):
            for k, v in value.items():
                print(f"refused {k:32} {v:7.3f} s")
        else:
            print(f"{key:40} {value if value is None else f'{value:7.3f} s'}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
