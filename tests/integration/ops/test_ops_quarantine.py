"""/ops lists quarantined documents and releases them (operator credentials, a form token, same
origin); /metrics counts them without naming anything."""

from __future__ import annotations

import re

from app.services import quarantine
from app.services.ports import NullNotifier
from app.web import create_app
from tests.conftest import add_client, submit_job
from tests.integration.ops.conftest import OPERATOR_HEADERS

SHA = "ab" * 32


def _quarantine(rt, sha: str = SHA) -> None:  # type: ignore[no-untyped-def]
    with rt.db.session() as s:
        quarantine.quarantine(s, rt.now(), NullNotifier(), sha, reason="LibreOffice crashed (on 2 factories)", factories=["f-1", "f-2"])


def _token(html: str) -> str:
    m = re.search(r'name="csrf" value="([0-9a-f]{64})"', html)
    assert m, "the page has no form token"
    return m.group(1)


def test_ops_lists_quarantined_documents_and_releases_with_the_page_token(ops_rt) -> None:  # type: ignore[no-untyped-def]
    _quarantine(ops_rt)
    client = create_app(ops_rt).test_client()
    page = client.get("/ops", headers=OPERATOR_HEADERS)
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert f'data-sha256="{SHA}"' in html and "LibreOffice crashed (on 2 factories)" in html and "f-1, f-2" in html
    data = client.get("/ops/data.json", headers=OPERATOR_HEADERS).get_json()
    assert [q["sha256"] for q in data["quarantined"]] == [SHA] and data["farm"]["quarantined"] == 1
    token = _token(html)
    url = f"/ops/quarantine/{SHA}/release"

    # No credentials, no token, a wrong token, another origin: all refused, nothing released.
    assert client.post(url, data={"csrf": token}).status_code == 401
    assert client.post(url, headers=OPERATOR_HEADERS).status_code == 403
    assert client.post(url, headers=OPERATOR_HEADERS, data={"csrf": "0" * 64}).status_code == 403
    cross = {**OPERATOR_HEADERS, "Origin": "https://evil.example"}
    assert client.post(url, headers=cross, data={"csrf": token}).status_code == 403
    cross = {**OPERATOR_HEADERS, "Referer": "https://evil.example/ops"}
    assert client.post(url, headers=cross, data={"csrf": token}).status_code == 403
    with ops_rt.db.read_session() as s:
        assert [q.sha256 for q in quarantine.listing(s)] == [SHA]

    same = {**OPERATOR_HEADERS, "Origin": "http://localhost"}
    done = client.post(url, headers=same, data={"csrf": token})
    assert done.status_code == 303 and done.headers["Location"].endswith("/ops#quarantine")
    with ops_rt.db.read_session() as s:
        assert quarantine.listing(s) == []
        assert [q.released_at for q in quarantine.listing(s, include_released=True)] == [ops_rt.now()]
    assert client.post(url, headers=same, data={"csrf": token}).status_code == 404  # not quarantined any more
    assert f'data-sha256="{SHA}"' not in client.get("/ops", headers=OPERATOR_HEADERS).get_data(as_text=True)


def test_metrics_count_farm_policy_without_names(ops_rt) -> None:  # type: ignore[no-untyped-def]
    _quarantine(ops_rt)
    client_id = add_client(ops_rt)
    submit_job(ops_rt, client_id)
    body = create_app(ops_rt).test_client().get("/metrics").get_data(as_text=True)
    assert "\nconvhub_quarantined_documents 1.0\n" in body
    assert "\nconvhub_content_quarantined_total 1.0\n" in body
    assert "\nconvhub_jobs_following 0.0\n" in body
    assert "\nconvhub_jobs_cancel_requested 0.0\n" in body
    assert "\nconvhub_result_cache_hits_total 0.0\n" in body
    assert SHA not in body and "f-1" not in body
