"""Rendering comparison (issue 17) on a live server, on SQLite and PostgreSQL: contentConvertAll
queues ordinary jobs for every served target, factories finish them over XML-RPC with PDFs drawn
here, beat's sweep finds the comparison due, the comparison task's service scores it, and
getContentComparison (through the CLI's SOAP client) reports scores, missing pages and the
reference. Real applications render in tests/e2e/test_compare_serve.py."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import xmlrpc.client
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from PIL import Image
from sqlalchemy import func, select

from app.convert_client import ContentServiceClient, StatusError
from app.db.models import Blob, Comparison, ComparisonPage, ComparisonScore, Job
from app.domain.comparison import ComparisonState
from app.services import comparison
from tests.conftest import add_client, add_factory, start_server, wait_for
from tests.integration.soap.soapkit import call
from tests.integration.xmlrpc.xrkit import proxy

DOC = b"PK an odt the fake factories never read"
WRITER = "LibreOffice Writer|7.4|odt|pdf,png,odf"
ABIWORD = "AbiWord|3.0|odt|pdf,odf"
CALC = "LibreOffice Calc|7.4|ods|pdf"
OLD_WRITER = "LibreOffice Writer|7.3|odt|odf"  # serves odt, but not as pdf


def page(box: tuple[int, int, int, int] | None = None) -> Image.Image:
    img = Image.new("RGB", (100, 100), "white")
    if box:
        img.paste(Image.new("RGB", (box[2] - box[0], box[3] - box[1]), "black"), box[:2])
    return img


def pdf(*pages: Image.Image) -> bytes:
    """A PDF of these 100 x 100 pixel pages at 60 dpi, so pdftoppm at 60 dpi gives them back."""
    out = io.BytesIO()
    pages[0].save(out, format="PDF", save_all=True, append_images=list(pages[1:]), resolution=60)
    return out.getvalue()


@pytest.fixture
def farm(make_runtime, any_db_url) -> Iterator[Any]:  # type: ignore[no-untyped-def]
    rt = make_runtime(broker=False, database_url=any_db_url, operator_user="admin", operator_password="op-secret")
    add_client(rt)  # petshow / Wf
    add_client(rt, "other", "Ot")
    add_factory(rt, "writer", "writer-secret-1", workers=(WRITER, CALC, OLD_WRITER))
    add_factory(rt, "abiword", "abiword-secret-1", workers=(ABIWORD,))
    srv = start_server(rt)
    srv.rt = rt  # type: ignore[attr-defined]
    yield srv
    srv.stop()


def client(srv: Any, name: str = "petshow", secret: str = "Wf") -> ContentServiceClient:
    return ContentServiceClient(srv.url, name, secret)


def upload(srv: Any, tmp_path: Any, data: bytes = DOC, name: str = "report.odt") -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return client(srv).upload(path, name)


def finish(srv: Any, factory: str, data: bytes, fmt: str = "pdf") -> int:
    fp = proxy(srv.url, factory, f"{factory}-secret-1")
    job = fp.jobs.poll(factory)
    assert job, f"{factory} got no job"
    fp.jobs.finish(factory, job["job"], fmt, xmlrpc.client.Binary(data), job["lease"])
    with srv.rt.db.read_session() as s:
        return int(s.scalar(select(Job.id).where(Job.guid == job["job"])))


def by_the_definition(pdf_a: bytes, pdf_b: bytes, number: int) -> float:
    """docs/comparison.md's score, counted pixel by pixel here (same-size pages at 60 dpi)."""
    from app.services.comparison_images import rasterize

    a = Image.open(io.BytesIO(rasterize(pdf_a, "pdf")[1][number - 1].png)).convert("RGB")
    b = Image.open(io.BytesIO(rasterize(pdf_b, "pdf")[1][number - 1].png)).convert("RGB")
    assert a.size == b.size == (100, 100)
    differing = sum(
        1 for pa, pb in zip(a.get_flattened_data(), b.get_flattened_data(), strict=True) if max(abs(x - y) for x, y in zip(pa, pb, strict=True)) > 16
    )
    return round(100 * differing / (a.width * a.height), 2)


def sweep_and_run(srv: Any) -> list[int]:
    """What beat's sweep and the comparison task do (tasks/comparison.py), in this process."""
    rt = srv.rt
    with rt.db.session() as s:
        due = comparison.due(s, rt.now())
    for cid in due:
        assert comparison.run(rt.db, rt.now, cid)
    return due


def test_convert_all_queues_ordinary_jobs_and_the_comparison_scores_every_page(farm, tmp_path) -> None:  # type: ignore[no-untyped-def]
    soap = client(farm)
    cid, jobs = soap.convert_all(upload(farm, tmp_path), "pdf", 1, 0)
    assert len(jobs) == 2  # AbiWord 3.0 and Writer 7.4; not Calc (ods) nor Writer 7.3 (no pdf)
    abiword, writer = jobs  # in (application, version) order
    st = soap.status(abiword)
    assert (st.application, st.version, st.state, st.format) == ("AbiWord", "3.0", 0, "pdf")
    assert soap.status(writer).application == "LibreOffice Writer"

    waiting = soap.comparison(cid)
    assert waiting.state == "waiting" and [r.job_status for r in waiting.renderings] == [0, 0]
    assert sweep_and_run(farm) == []  # not due while a job is queued

    abiword_pdf = pdf(page((10, 10, 30, 30)), page())
    writer_pdf = pdf(page((10, 10, 30, 30)), page((0, 0, 50, 20)), page())
    assert finish(farm, "abiword", abiword_pdf) == abiword
    assert sweep_and_run(farm) == []  # one job still queued
    assert finish(farm, "writer", writer_pdf) == writer
    assert sweep_and_run(farm) == [cid]

    done = soap.comparison(cid)
    assert (done.state, done.reference_job_id, done.page_counts_differ, done.detail) == ("complete", abiword, True, None)
    ref, other = done.renderings
    assert (ref.job_id, ref.application, ref.version, ref.job_status, ref.page_count) == (abiword, "AbiWord", "3.0", 3, 2)
    assert ref.pages == ((1, 0.0, None), (2, 0.0, None))
    # Page 1 identical; page 2: a 50 x 20 box (about 10% of the page); page 3 only in Writer's rendering.
    expected = by_the_definition(abiword_pdf, writer_pdf, 2)
    assert 10.0 <= expected < 11.0
    assert (other.job_id, other.page_count) == (writer, 3)
    assert other.pages == ((1, 0.0, None), (2, expected, None), (3, None, "reference"))

    # Against Writer's rendering: the same scores, and AbiWord lacks page 3.
    flipped = soap.comparison(cid, writer)
    assert flipped.reference_job_id == writer
    assert flipped.renderings[0].pages == ((1, 0.0, None), (2, expected, None), (3, None, "rendering"))
    assert flipped.renderings[1].pages == ((1, 0.0, None), (2, 0.0, None), (3, 0.0, None))

    # Stored with the comparison: 5 page images, 2 difference images; done once.
    with farm.rt.db.read_session() as s:
        assert s.scalar(select(func.count()).select_from(ComparisonPage).where(ComparisonPage.comparison_id == cid)) == 5
        scores = s.scalars(select(ComparisonScore).where(ComparisonScore.comparison_id == cid)).all()
        assert sorted((r.page, r.missing, r.diff_blob_id is not None) for r in scores) == [(1, None, True), (2, None, True), (3, "a", False)]  # a = AbiWord lacks it
        assert Image.open(io.BytesIO(comparison.page_png(s, cid, writer, 2))).size == (100, 100)
        assert Image.open(io.BytesIO(comparison.diff_png(s, cid, writer, abiword, 2))).size == (100, 100)
    assert sweep_and_run(farm) == []
    assert comparison.run(farm.rt.db, farm.rt.now, cid) is False  # a duplicate message takes nothing


def test_comparison_refusals_are_statuses(farm, tmp_path) -> None:  # type: ignore[no-untyped-def]
    soap = client(farm)
    ident = upload(farm, tmp_path)
    cid, jobs = soap.convert_all(ident, "pdf", 1, 0)
    with pytest.raises(StatusError) as unknown:
        soap.comparison(cid + 100)
    assert unknown.value.status == 508
    with pytest.raises(StatusError) as theirs:
        client(farm, "other", "Ot").comparison(cid)
    assert theirs.value.status == 532
    with pytest.raises(StatusError, match="is not one of comparison") as foreign:
        soap.comparison(cid, max(jobs) + 1)
    assert foreign.value.status == 599
    with pytest.raises(StatusError, match="compared as pdf or png"):
        soap.convert_all(ident, "odf", 1, 0)
    with pytest.raises(StatusError, match="unknown contentIdentifier"):
        client(farm, "other", "Ot").convert_all(ident, "pdf", 1, 0)
    ods = upload(farm, tmp_path, name="sheet.ods")
    with pytest.raises(StatusError, match="no registered factory converts ods documents to png"):
        soap.convert_all(ods, "png", 1, 0)
    # Nothing was stored by the refused calls.
    with farm.rt.db.read_session() as s:
        assert s.scalar(select(func.count()).select_from(Comparison)) == 1
    # The wire: jobId repeated, no wrapper; status 200.
    r = call(farm, "contentConvertAll", [("contentIdentifier", ident)])
    assert r.status == 200 and len(r.body.findall("jobId")) == 2 and r.get("comparisonId")


def test_cached_results_make_a_comparison_due_at_once_and_a_failed_job_is_reported(farm, tmp_path) -> None:  # type: ignore[no-untyped-def]
    soap = client(farm)
    ident = upload(farm, tmp_path)
    first, jobs = soap.convert_all(ident, "pdf", 1, 0)
    finish(farm, "abiword", pdf(page()))
    finish(farm, "writer", pdf(page()))
    assert sweep_and_run(farm) == [first]
    # The same document again: both jobs complete at once from the result cache (ordinary submits).
    again, cached = soap.convert_all(ident, "pdf", 1, 0)
    assert [soap.status(j).state for j in cached] == [3, 3]
    assert sweep_and_run(farm) == [again]
    assert [r.pages for r in soap.comparison(again).renderings] == [((1, 0.0, None),), ((1, 0.0, None),)]

    # A failed job: reported on its rendering, and fewer than two renderings are compared.
    other = upload(farm, tmp_path, DOC + b" v2")
    third, (abiword, writer) = soap.convert_all(other, "pdf", 1, 0)
    finish(farm, "abiword", pdf(page()))
    fp = proxy(farm.url, "writer", "writer-secret-1")
    job = fp.jobs.poll("writer")
    fp.jobs.fail("writer", job["job"], "the document made the converter crash", job["lease"], True)
    assert sweep_and_run(farm) == [third]
    failed = soap.comparison(third)
    assert failed.state == "complete" and failed.detail == "fewer than two renderings to compare"
    assert failed.renderings[1].note == "job FAILED: the document made the converter crash"
    assert failed.renderings[1].job_status == 4 and failed.renderings[1].pages == ()


def test_the_sweep_resends_a_lost_task_and_retakes_a_dead_one(farm, tmp_path) -> None:  # type: ignore[no-untyped-def]
    rt = farm.rt
    cid, _ = client(farm).convert_all(upload(farm, tmp_path), "pdf", 1, 0)
    finish(farm, "abiword", pdf(page()))
    finish(farm, "writer", pdf(page()))
    with rt.db.session() as s:
        assert comparison.due(s, rt.now()) == [cid]
    with rt.db.session() as s:
        assert comparison.due(s, rt.now()) == []  # sent: not again at once
    rt.clock.advance(comparison.RESEND_AFTER.total_seconds() + 1)
    with rt.db.session() as s:
        assert comparison.due(s, rt.now()) == [cid]  # the message was lost: sent again
        s.execute(Comparison.__table__.update().values(state=int(ComparisonState.RUNNING), started_at=rt.now()))
    rt.clock.advance(comparison.RESEND_AFTER.total_seconds() + 1)
    with rt.db.session() as s:
        assert comparison.due(s, rt.now()) == []  # running (a task has it)
    rt.clock.advance(comparison.STALE_RUN.total_seconds())
    with rt.db.session() as s:
        assert comparison.due(s, rt.now()) == [cid]  # that task died
    assert comparison.run(rt.db, rt.now, cid) is True


def test_retention_removes_comparisons_with_their_images(farm, tmp_path) -> None:  # type: ignore[no-untyped-def]
    rt = farm.rt
    with rt.db.read_session() as s:
        blobs_before = s.scalar(select(func.count()).select_from(Blob))
    cid, _ = client(farm).convert_all(upload(farm, tmp_path), "png", 1, 0)
    png = io.BytesIO()
    page((0, 0, 10, 10)).save(png, format="PNG")
    finish(farm, "writer", png.getvalue(), "png")  # only Writer serves png here: one rendering
    assert sweep_and_run(farm) == [cid]
    with rt.db.session() as s:
        assert comparison.purge_expired(s, rt.now(), 1) == 0  # too young
    with rt.db.read_session() as s:
        assert s.scalar(select(func.count()).select_from(Comparison)) == 1
    rt.clock.advance(timedelta(days=1, seconds=1).total_seconds())
    with rt.db.session() as s:
        assert comparison.purge_expired(s, rt.now(), 1) == 1
        assert comparison.purge_expired(s, rt.now(), 0) == 0  # retention off
    with rt.db.read_session() as s:
        assert s.scalar(select(func.count()).select_from(Comparison)) == 0
        # Only the upload and the result remain: no page or difference image is left behind.
        assert s.scalar(select(func.count()).select_from(Blob)) == blobs_before + 2


def test_convhub_compare_over_soap_waits_and_prints_each_applications_scores(farm, tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "report.odt").write_bytes(DOC)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVHUB_")}
    env["CONVHUB_CLIENT_SECRET"] = "Wf"
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "compare", "report.odt", "--server", farm.url, "--client", "petshow",
         "--wait", "--timeout", "100"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        def queued() -> bool:
            assert proc.poll() is None, proc.communicate()
            with farm.rt.db.read_session() as s:
                return s.scalar(select(func.count()).select_from(Job)) == 2

        wait_for(queued, 60, "the two jobs")
        abiword_pdf, writer_pdf = pdf(page(), page()), pdf(page((0, 0, 100, 50)))
        finish(farm, "abiword", abiword_pdf)
        finish(farm, "writer", writer_pdf)
        assert sweep_and_run(farm) == [1]
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    half = by_the_definition(abiword_pdf, writer_pdf, 1)
    assert 50.0 <= half < 52.0  # the lower half of the page is black (and a row at its edge, by rasterizing)
    assert out.splitlines() == [
        "comparison 1: report.odt -> pdf, jobs 1, 2",
        "comparison 1 complete",
        "reference: AbiWord 3.0 (job 1); score 0 = identical pixels, 100 = nothing in common",
        "  AbiWord 3.0             job 1  2 pages (reference)  p1 0.00  p2 0.00",
        f"  LibreOffice Writer 7.4  job 2  1 page  p1 {half:.2f}  p2 missing",
        "page counts differ: AbiWord 3.0 2, LibreOffice Writer 7.4 1",
        f"{farm.url}/ops/comparisons/1",
    ]
