"""The seed's four example requests, posted verbatim over a socket; answers compared with the seed's
example responses by element names, nesting and order (prefixes and values ignored).

Two deliberate differences, both documented in docs/client-api.md:
- the count and list responses carry `<status>` first (SPEC: every response carries status), which
  the seed's examples omit: only that leading element is ignored;
- deleteContentConversions answers also `deletedCount` and `skippedCount` [ext] after `<status>`.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from lxml import etree
from sqlalchemy import update

from app.db.models import Job
from app.domain.matching import WorkerSpec
from app.domain.states import JobState
from app.services import claims, client_views
from tests.conftest import WRITER, submit_job
from tests.integration.soap.soapkit import SAFE, SOAP_ENV, post, seed_examples, shape

EXAMPLES = seed_examples()
EXTENSIONS = {"deleteContentConversions": {"deletedCount", "skippedCount"}}


def _seed_body(op: str) -> etree._Element:
    root = etree.fromstring(EXAMPLES[op]["response"].encode(), SAFE)
    return root.find(f"{{{SOAP_ENV}}}Body")[0]


def _compare(op: str, reply, *, leading_status: bool) -> None:  # type: ignore[no-untyped-def]
    assert reply.http == 200
    got = shape(reply.body)
    if leading_status:
        assert got[1][0] == ("status", ()), "status must come first"
        assert reply.status == 200
        got = (got[0], got[1][1:])
    got = (got[0], tuple(c for c in got[1] if c[0] not in EXTENSIONS.get(op, set())))
    assert got == shape(_seed_body(op))
    assert etree.QName(reply.body).namespace == "http://www.yospace.com/tundra/ContentService/"
    # children unqualified, as in the seed
    assert all(etree.QName(c).namespace is None for c in reply.body.iter() if c is not reply.body)


def _set_state(rt, ids, state):  # type: ignore[no-untyped-def]
    with rt.db.session() as s:
        s.execute(update(Job).where(Job.id.in_(ids)).values(state=int(state)))


def test_seed_has_the_four_examples():
    assert set(EXAMPLES) == {
        "getContentConvertCounts",
        "getContentConvertsPerState",
        "deleteContentConversion",
        "deleteContentConversions",
    }
    assert all(set(v) == {"request", "response"} for v in EXAMPLES.values())


def test_counts_example(soap):
    rt = soap.runtime
    ids = [submit_job(rt, 1)[0] for _ in range(17)]
    _set_state(rt, ids[12:14], JobState.REQUESTED_FOR_PROCESSING)
    _set_state(rt, ids[14:], JobState.FAILED)
    reply = post(soap, EXAMPLES["getContentConvertCounts"]["request"])
    _compare("getContentConvertCounts", reply, leading_status=True)
    got = [
        (int(c.findtext("count")), int(c.findtext("jobStatus")))
        for c in reply.body.findall("contentConvertCount")
    ]
    seed = [
        (int(c.findtext("count")), int(c.findtext("jobStatus")))
        for c in _seed_body("getContentConvertCounts")
    ]
    assert got == seed == [(12, 0), (2, 1), (3, 4)]


def test_per_state_example(soap):
    rt = soap.runtime
    ids = [submit_job(rt, 1)[0] for _ in range(3)]
    with rt.db.session() as s:
        c = claims.claim(
            s, rt.now(), rt.policy, owner="factory-1", workers=(WorkerSpec.parse(WRITER),), job_id=ids[2]
        )
        assert c is not None
    _set_state(rt, [ids[2]], JobState.PROCESSING)
    reply = post(soap, EXAMPLES["getContentConvertsPerState"]["request"])
    _compare("getContentConvertsPerState", reply, leading_status=True)
    got = [
        (int(c.findtext("jobId")), int(c.findtext("jobStatus")))
        for c in reply.body.findall("contentConvertsPerState")
    ]
    assert got == [(ids[0], 0), (ids[1], 0), (ids[2], 2)]


def test_delete_one_example_existing_job(soap):
    """The example's jobId 438214 made to exist for petshow: the answer is the seed's, exactly."""
    rt = soap.runtime
    job_id, _ = submit_job(rt, 1)
    with rt.db.session() as s:
        s.execute(update(Job).where(Job.id == job_id).values(id=438214))
    reply = post(soap, EXAMPLES["deleteContentConversion"]["request"])
    _compare("deleteContentConversion", reply, leading_status=False)
    assert reply.status == 200
    with rt.db.read_session() as s:
        assert client_views.list_jobs(s, 1) == []


def test_delete_one_example_unknown_job(soap):
    reply = post(soap, EXAMPLES["deleteContentConversion"]["request"])
    assert reply.http == 200 and reply.status == 508
    assert "438214" in (reply.get("statusMessage") or "")
    assert [etree.QName(c).localname for c in reply.body] == ["status", "statusMessage"]


@pytest.mark.parametrize("inside", [True, False])
def test_delete_range_example(soap, clock, inside):
    rt = soap.runtime
    clock.t = (
        datetime(2009, 10, 26, 20, 0, tzinfo=UTC)
        if inside
        else datetime(2009, 10, 26, 20, 32, 52, tzinfo=UTC)
    )
    submit_job(rt, 1)
    clock.t = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    reply = post(soap, EXAMPLES["deleteContentConversions"]["request"])
    _compare("deleteContentConversions", reply, leading_status=False)
    assert reply.status == 200
    assert (reply.get("deletedCount"), reply.get("skippedCount")) == (("1", "0") if inside else ("0", "0"))
