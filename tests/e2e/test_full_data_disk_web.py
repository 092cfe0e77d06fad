"""A full data disk under `convhub web` costs clear errors, not web workers. Found by the loss soak
(tests/soak/test_loss.py): prometheus_client's multiprocess metric files lived in the data directory
and grow sparsely through a memory map, so with the disk full gunicorn's workers died of SIGBUS in
the middle of their requests (the clients saw dropped connections and empty replies). Now the files
live in shared memory (app.web.serving.metrics_dir): the same worker serves before and after."""

from __future__ import annotations

import os
import signal
import subprocess
import xmlrpc.client

import pytest
import requests

from tests.conftest import IN_CI, free_port, wait_for
from tests.e2e.test_serve import CONVHUB, _cli, _env, _get
from tests.e2e.test_web_server import _alive, _workers
from tests.soak.services import SmallDisk, Unavailable


@pytest.fixture
def small_disk(tmp_path):  # type: ignore[no-untyped-def]
    try:
        disk = SmallDisk(tmp_path / "var", 32)
    except Unavailable as exc:
        if IN_CI:
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    yield disk
    disk.release()
    disk.unmount()


def test_web_workers_survive_a_full_data_disk(tmp_path, small_disk):
    env = _env(small_disk.path)
    _cli(env, "db", "upgrade")
    _cli(env, "factories", "add", "f1", "--secret", "factory-secret-1", "--worker", "LibreOffice Writer|7.4|odt|pdf")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "web.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(CONVHUB + ["web", "--port", str(port), "--workers", "1", "--threads", "2"], env=env,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: _get(base + "/healthz")[0] == 200, 60, "healthz")
        workers = wait_for(lambda: _workers(proc.pid), 30, "the web worker")
        small_disk.fill()
        proxy = xmlrpc.client.ServerProxy(f"http://f1:factory-secret-1@127.0.0.1:{port}/xmlrpc")
        for i in range(15):  # new metric series each: label values the workers have not written yet
            try:
                proxy.jobs.poll("f1")
            except xmlrpc.client.Fault as fault:
                assert fault.faultCode == 503
            requests.get(f"{base}/no-such-page-{i}", timeout=10)
            requests.get(f"{base}/metrics", timeout=10)
        assert all(_alive(w) for w in workers) and _workers(proc.pid) == workers  # no worker died and was respawned
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=40)
    text = log_path.read_text()
    assert "SIGBUS" not in text and "Traceback" not in text, text[-3000:]
