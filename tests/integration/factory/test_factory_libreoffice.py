"""The LibreOffice backend against real LibreOffice: page ranges, png, odf round trip, hangs, crashes."""

from __future__ import annotations

import base64
import contextlib
import io
import os
import signal
import threading
import zipfile

import pytest

from app.factory.converters import ODF_MIMETYPES, LibreOfficeConverter
from app.factory.errors import ConversionCancelled, ConversionError, ConversionTimeout
from app.factory.office import OfficePool
from tests.conftest import wait_for
from tests.factorykit import pdf_pages, png_size

pytestmark = [pytest.mark.libreoffice, pytest.mark.usefixtures("libreoffice_required")]

APPS = {"odt": "LibreOffice Writer", "ods": "LibreOffice Calc", "odp": "LibreOffice Impress"}


def job(doctype: str, doc: bytes, fmt: str = "pdf", start: int = 0, end: int = 0) -> dict:
    return {
        "job": "g",
        "application": APPS[doctype],
        "version": "x",
        "doctype": doctype,
        "format": fmt,
        "pageStart": start,
        "pageEnd": end,
        "filename": f"five.{doctype}",
        "document": base64.b64encode(doc).decode("ascii"),
    }


@pytest.fixture(scope="module")
def conv(lo_pool):
    c = LibreOfficeConverter(lo_pool, timeout=60)
    yield c  # the session's pool outlives this converter: no close()


def test_workers_from_installed_version(conv):
    workers = {w.application: w for w in conv.workers()}
    assert set(workers) == {"LibreOffice Writer", "LibreOffice Calc", "LibreOffice Impress"}
    assert workers["LibreOffice Calc"].doctypes == frozenset({"ods"})  # app.domain's WorkerSpec: sets
    assert workers["LibreOffice Writer"].formats == frozenset({"pdf", "png", "odf"})
    major, minor = conv.version.split(".")
    assert major.isdigit() and minor.isdigit()


@pytest.mark.parametrize("doctype", ["odt", "ods", "odp"])
def test_pdf_page_range(conv, odf_docs, doctype):
    fmt, data = conv.convert(job(doctype, odf_docs[doctype], "pdf", 2, 3))
    assert fmt == "pdf" and data.startswith(b"%PDF")
    assert pdf_pages(data) == 2


@pytest.mark.parametrize("start, end, pages", [(0, 0, 5), (1, 0, 5), (4, 0, 2), (3, 3, 1), (1, 5, 5)])
def test_pdf_range_edges(conv, odf_docs, start, end, pages):
    assert pdf_pages(conv.convert(job("odt", odf_docs["odt"], "pdf", start, end))[1]) == pages


def test_empty_format_means_pdf(conv, odf_docs):
    fmt, data = conv.convert(job("odt", odf_docs["odt"], ""))
    assert fmt == "pdf" and pdf_pages(data) == 5


def test_png_is_first_page_of_range_at_96_dpi(conv, odf_docs):
    fmt, page2 = conv.convert(job("odt", odf_docs["odt"], "png", 2, 3))
    assert fmt == "png"
    assert png_size(page2) == (794, 1123)  # A4 at 96 dpi
    page1 = conv.convert(job("odt", odf_docs["odt"], "png", 0, 0))[1]
    assert png_size(page1) == (794, 1123)
    assert page1 != page2  # "Page 1" and "Page 2" render differently


def test_png_of_a_slide(conv, odf_docs):
    w, h = png_size(conv.convert(job("odp", odf_docs["odp"], "png", 3, 0))[1])
    assert w > h  # a landscape slide


@pytest.mark.parametrize("doctype", ["odt", "ods", "odp"])
def test_odf_round_trip(conv, odf_docs, doctype):
    fmt, data = conv.convert(job(doctype, odf_docs[doctype], "odf"))
    assert fmt == "odf"
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        first = zf.infolist()[0]
        assert first.filename == "mimetype" and first.compress_type == zipfile.ZIP_STORED
        assert zf.read("mimetype").decode() == ODF_MIMETYPES[doctype]
        assert zf.testzip() is None
        assert b"Page 3" in zf.read("content.xml") or doctype != "odt"


def test_page_past_the_end(conv, odf_docs):
    with pytest.raises(ConversionError, match="past the end"):
        conv.convert(job("odt", odf_docs["odt"], "pdf", 7, 0))
    with pytest.raises(ConversionError, match="past the end"):
        conv.convert(job("ods", odf_docs["ods"], "pdf", 7, 9))


def test_wrong_or_broken_documents(conv, odf_docs):
    with pytest.raises(ConversionError, match="not odt"):
        conv.convert(job("odt", odf_docs["ods"]))
    with pytest.raises(ConversionError, match="not an ODF package"):
        conv.convert(job("odt", b"plain text, not a zip"))
    broken = io.BytesIO()
    with zipfile.ZipFile(broken, "w") as zf:
        zf.writestr("mimetype", ODF_MIMETYPES["odt"])
        zf.writestr("content.xml", "<not-closed")
    with pytest.raises(ConversionError):
        conv.convert(job("odt", broken.getvalue()))
    # The instances survive bad input.
    assert pdf_pages(conv.convert(job("odt", odf_docs["odt"], "pdf", 2, 2))[1]) == 1


def test_two_instances_convert_in_parallel(conv, odf_docs, lo_pool):
    results, errors = [], []

    def work():
        try:
            for _ in range(3):
                results.append(pdf_pages(conv.convert(job("odp", odf_docs["odp"], "pdf", 1, 2))[1]))
        except Exception as exc:  # reported in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and results == [2] * 6
    assert all(inst.alive() for inst in lo_pool.instances)


def _borrow_all_but_one(pool):
    """Hold every instance but the last one, so the converter must use that one."""
    taken = [pool._free.get() for _ in range(len(pool.instances) - 1)]
    return taken, pool._free.queue[0]


def test_sigstopped_instance_is_killed_at_timeout_and_restarts(conv, odf_docs, lo_pool):
    held, target = _borrow_all_but_one(lo_pool)
    try:
        starts = target.starts
        os.killpg(target.pid, signal.SIGSTOP)  # a hung soffice: alive but never answers
        # How long this takes: bench/bench_timeouts.py (libreoffice_stopped_deadline_3s_seconds).
        with pytest.raises(ConversionTimeout, match="within 3 s"):
            conv.convert(job("odt", odf_docs["odt"]), deadline_seconds=3)
        assert target.starts == starts + 1 and target.alive()
        fmt, data = conv.convert(job("odt", odf_docs["odt"], "pdf", 2, 3))
        assert pdf_pages(data) == 2
    finally:
        for inst in held:
            lo_pool._free.put(inst)


def test_crashed_instance_is_restarted_on_next_use(conv, odf_docs, lo_pool):
    held, target = _borrow_all_but_one(lo_pool)
    try:
        os.killpg(target.pid, signal.SIGKILL)
        wait_for(lambda: not target.alive(), 10, "the killed soffice to be gone")
        assert pdf_pages(conv.convert(job("ods", odf_docs["ods"], "pdf", 2, 3))[1]) == 2
        assert target.alive()
    finally:
        for inst in held:
            lo_pool._free.put(inst)


def test_cancel_abandons_a_conversion(conv, odf_docs, lo_pool):
    held, target = _borrow_all_but_one(lo_pool)
    try:
        os.killpg(target.pid, signal.SIGSTOP)
        cancel = threading.Event()
        threading.Timer(0.5, cancel.set).start()
        with pytest.raises(ConversionCancelled):
            conv.convert(job("odt", odf_docs["odt"]), deadline_seconds=30, cancel=cancel)
        assert target.alive()
    finally:
        for inst in held:
            lo_pool._free.put(inst)


def test_restart_every_k_conversions(odf_docs, tmp_path):
    with OfficePool(1, workdir=tmp_path, restart_every=2) as pool:
        conv = LibreOfficeConverter(pool, version="0.0", timeout=60)
        inst = pool.instances[0]
        first_pid = None
        for _ in range(3):
            conv.convert(job("odt", odf_docs["odt"], "pdf", 1, 1))
            first_pid = first_pid or inst.pid
        assert inst.starts == 2 and inst.total_conversions == 3 and inst.conversions == 1
        assert inst.pid != first_pid
        assert (tmp_path / "profile-0").is_dir()  # one private profile per instance


_HOLDER = r"""
import sys, time
from app.factory.office import OfficeInstance
inst = OfficeInstance(0, sys.argv[1], restart_every=0)
inst.start()  # from the main thread; the pool starts instances from short-lived threads (below)
print(inst.pid, inst._bridge.pid, flush=True)
if sys.argv[2] == "converting":  # a conversion in progress when the factory is killed: soffice is stopped
    import os, signal
    os.killpg(inst.pid, signal.SIGSTOP)  # (hung: the bridge waits on it, as in a long conversion)
    inst.call({"input": "/nonexistent.odt", "output": "/tmp/x.pdf", "filter": "writer_pdf_Export"}, timeout=600)
time.sleep(600)
"""


def _group_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


def _pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    with open(f"/proc/{pid}/stat") as f:  # a zombie (not reaped yet by its new parent) is gone too
        return f.read().rsplit(")", 1)[1].split()[0] == "Z"


@pytest.mark.parametrize("state", ["idle", "converting"])
def test_factory_killed_with_sigkill_leaves_no_soffice(tmp_path, state):
    """A factory process killed outright (SIGKILL: no cleanup of its own runs) takes its soffice
    with it: the UNO bridge sees its parent gone and kills soffice's process group."""
    import subprocess
    import sys

    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(tmp_path), state], stdout=subprocess.PIPE, text=True)
    try:
        office, bridge = (int(x) for x in holder.stdout.readline().split())  # type: ignore[union-attr]
        assert not _group_gone(office)
        if state == "converting":
            wait_for(lambda: open(f"/proc/{office}/stat").read().rsplit(")", 1)[1].split()[0] == "T" or None, 10, "soffice stopped")
        holder.kill()
        holder.wait()
        wait_for(lambda: _group_gone(office) or None, 15, "soffice's process group to be gone")
        wait_for(lambda: _pid_gone(bridge) or None, 15, "the bridge to be gone")
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
        with contextlib.suppress(ProcessLookupError, UnboundLocalError):
            os.killpg(office, signal.SIGKILL)
