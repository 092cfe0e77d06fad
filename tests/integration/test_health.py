"""/healthz over a socket: 200 with both up, 503 naming the one that is down. No details leak."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from tests.conftest import start_server


def _get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_healthy(live_server):
    assert _get(live_server.url + "/healthz") == (200, {"status": "ok", "database": "ok", "broker": "ok"})


def test_broker_down_is_503(make_runtime, refused_port):
    rt = make_runtime(broker_url=f"amqp://guest:guest@127.0.0.1:{refused_port}//")
    srv = start_server(rt)
    try:
        status, body = _get(srv.url + "/healthz")
    finally:
        srv.stop()
    assert status == 503 and body == {"status": "unavailable", "database": "ok", "broker": "down"}


def test_database_down_is_503(make_runtime, refused_port):
    rt = make_runtime(database_url=f"postgresql://postgres@127.0.0.1:{refused_port}/nothing")
    srv = start_server(rt)
    try:
        status, body = _get(srv.url + "/healthz")
    finally:
        srv.stop()
    assert status == 503 and body["database"] == "down" and body["broker"] == "ok"
    assert "Traceback" not in json.dumps(body) and "postgresql" not in json.dumps(body)
