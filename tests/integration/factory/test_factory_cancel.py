"""Cancellation end to end with real LibreOffice: the reference factory converts a job that hangs
(its soffice is stopped), the client cancels it, the factory's next heartbeat is answered
cancelled = true, and the factory kills and restarts that LibreOffice instance; the job ends FAILED
"cancelled by client" and a late jobs.finish is refused with fault 409."""

from __future__ import annotations

import os
import signal
import threading
import xmlrpc.client

import pytest
from sqlalchemy import select

from app.db.models import Job
from app.factory.converters import LibreOfficeConverter
from app.factory.runner import FactoryRunner
from app.factory.xmlrpc_client import make_proxy
from app.services import client_views
from tests.conftest import add_client, add_factory, start_server, submit_job, wait_for

pytestmark = [pytest.mark.libreoffice, pytest.mark.usefixtures("libreoffice_required")]

NAME, SECRET = "lo-factory", "factory-secret-lo"


def test_cancelled_conversion_kills_the_instance_at_the_next_heartbeat(make_runtime, lo_pool, odf_docs) -> None:  # type: ignore[no-untyped-def]
    conv = LibreOfficeConverter(lo_pool, timeout=120)
    rt = make_runtime(broker=False)
    client_id = add_client(rt)
    add_factory(rt, NAME, SECRET, workers=(f"LibreOffice Writer|{conv.version}|odt|pdf,png,odf",))
    job_id, guid = submit_job(rt, client_id, odf_docs["odt"], version=conv.version)
    srv = start_server(rt)
    taken = [lo_pool._free.get() for _ in range(len(lo_pool.instances) - 1)]  # the job gets the last one
    target = lo_pool._free.queue[0]
    starts = target.starts
    os.killpg(target.pid, signal.SIGSTOP)  # a conversion that never ends by itself
    runner = FactoryRunner(
        lambda: make_proxy(srv.url, NAME, SECRET), NAME, conv, once=True, lease_seconds=rt.settings.lease_seconds,
        heartbeat_seconds=1.0,
    )
    thread = threading.Thread(target=runner.run, kwargs={"install_signals": False}, daemon=True)
    try:
        thread.start()

        def state() -> tuple[int, str | None]:
            with rt.db.read_session() as s:
                row = s.execute(select(Job.state, Job.lease_token).where(Job.id == job_id)).one()
            return int(row[0]), row[1]

        wait_for(lambda: state()[0] == 2, 60, "the factory to start converting (PROCESSING)")
        lease = state()[1]
        with rt.db.session() as s:
            assert client_views.cancel_one(s, rt.now(), client_id, job_id) == client_views.CANCEL_REQUESTED
        wait_for(lambda: not thread.is_alive(), 60, "the factory to stop the cancelled conversion")
        assert runner.stats["abandoned"] == 1 and runner.stats["finished"] == runner.stats["failed"] == 0
        with rt.db.read_session() as s:
            view = client_views.status_of(s, client_id, job_id)
        assert (view.state, view.failure_reason) == (4, "cancelled by client")
        # The hung instance was killed and started again, and it converts.
        assert target.starts == starts + 1 and target.alive()
        assert conv.convert(
            {"job": "g", "application": "LibreOffice Writer", "version": conv.version, "doctype": "odt", "format": "pdf",
             "pageStart": 1, "pageEnd": 1, "filename": "a.odt", "document": odf_docs["odt"]}
        )[0] == "pdf"
        with pytest.raises(xmlrpc.client.Fault) as late:
            make_proxy(srv.url, NAME, SECRET).jobs.finish(NAME, guid, "pdf", xmlrpc.client.Binary(b"%PDF-1.7 late"), lease)
        assert late.value.faultCode == 409
    finally:
        runner.stop(hurry=True)
        thread.join(30)
        for inst in taken:
            lo_pool._free.put(inst)
        srv.stop()
