from datetime import UTC, datetime, timedelta

import pytest

from app.config import ConfigError, load_settings
from app.domain.credentials import generate_secret, hash_secret, verify_secret
from app.domain.errors import BadJobState, ConvhubError, LeaseNotHeld
from app.domain.leases import LeasePolicy, after_lost_attempt, lease_is_live
from app.domain.matching import WorkerSpec, doctype_of, parse_pages, queue_name
from app.domain.states import JobState, can_transition, require_transition

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_states_have_the_wire_numbers():
    assert [int(s) for s in JobState] == [0, 1, 2, 3, 4]
    assert JobState(1).in_flight and JobState(2).in_flight and not JobState(0).in_flight


@pytest.mark.parametrize(
    ("src", "dst", "ok"),
    [
        (0, 1, True), (1, 2, True), (2, 3, True), (1, 3, True), (1, 0, True), (2, 4, True),
        (0, 3, False), (3, 1, False), (4, 2, False), (3, 4, False),
    ],
)
def test_transitions(src, dst, ok):
    assert can_transition(JobState(src), JobState(dst)) is ok
    if ok:
        require_transition(src, JobState(dst))
    else:
        with pytest.raises(BadJobState, match=f"{JobState(src).name} job cannot become {JobState(dst).name}"):
            require_transition(src, JobState(dst))


def test_lease_grant_extend_and_cap():
    p = LeasePolicy(lease_seconds=300, max_total_seconds=600, max_attempts=3)
    assert p.grant_expiry(T0) == T0 + timedelta(seconds=300)
    assert p.extended_expiry(T0, T0 + timedelta(seconds=100)) == T0 + timedelta(seconds=400)
    # capped at leased_at + max_total
    assert p.extended_expiry(T0, T0 + timedelta(seconds=500)) == T0 + timedelta(seconds=600)
    assert p.new_token() != p.new_token() and len(p.new_token()) == 32


def test_attempts_lead_to_failed():
    assert after_lost_attempt(1, 3) == JobState.QUEUED
    assert after_lost_attempt(3, 3) == JobState.FAILED
    assert after_lost_attempt(1, 1) == JobState.FAILED


def test_lease_is_live():
    exp = T0 + timedelta(seconds=10)
    assert lease_is_live("abc", exp, "abc", T0)
    assert lease_is_live("abc", exp, None, T0)
    assert not lease_is_live("abc", exp, "abd", T0)
    assert not lease_is_live("abc", exp, "abc", exp)  # expiry instant is already expired
    assert not lease_is_live(None, None, "abc", T0)
    assert not lease_is_live("abc", exp, "äbc", T0)  # non-ASCII from the wire: refused, not an error


def test_worker_spec_parse_and_accept():
    w = WorkerSpec.parse("LibreOffice Writer|7.4|odt|pdf,png,odf")
    assert w.pair == ("LibreOffice Writer", "7.4")
    assert w.accepts("LibreOffice Writer", "7.4", "odt", "pdf")
    assert w.accepts("LibreOffice Writer", "7.4", "odt", "")  # empty format: factory decides
    assert not w.accepts("LibreOffice Writer", "7.4", "ods", "pdf")
    assert not w.accepts("LibreOffice Writer", "7.5", "odt", "pdf")
    assert WorkerSpec.parse(w.format()) == w
    for bad in ["x|1|odt", "|1|odt|pdf", "A|1|doc|pdf", "A|1|odt|docx"]:
        with pytest.raises(ValueError):
            WorkerSpec.parse(bad)


def test_queue_names_are_documented_slugs():
    assert queue_name("LibreOffice Writer", "7.4") == "convert.libreoffice-writer.7-4"
    assert queue_name("MS Office", "2003 SP2") == "convert.ms-office.2003-sp2"


def test_pages_and_doctypes():
    assert parse_pages("2-3") == (2, 3)
    assert parse_pages("4") == (4, 4)
    assert parse_pages("2-") == (2, 0)
    assert parse_pages(None) == (1, 0)
    with pytest.raises(ValueError):
        parse_pages("3-2")
    with pytest.raises(ValueError):
        parse_pages("a-b")
    assert doctype_of("x.ODT") == "odt" and doctype_of("x.docx") is None and doctype_of("noext") is None


def test_secret_hashing_is_salted_and_verifies():
    h1, h2 = hash_secret("Wf", n=2**10), hash_secret("Wf", n=2**10)
    assert h1 != h2 and h1.split("$")[4] != h2.split("$")[4]  # a fresh salt each time
    assert verify_secret("Wf", h1) and verify_secret("Wf", h2) and not verify_secret("Wg", h1)
    # The stored form never carries the secret's text. The secret has spaces, which base64 and the
    # `$`-separated header never contain, so this cannot pass or fail by chance.
    long_secret = "correct horse battery staple of the petshow client"
    stored = hash_secret(long_secret, n=2**10)
    assert long_secret not in stored and verify_secret(long_secret, stored)
    assert not verify_secret("Wf", "garbage")
    assert len(generate_secret()) >= 26  # 160 bits in URL-safe base64


def test_errors_default_message_from_docstring():
    e = LeaseNotHeld()
    assert isinstance(e, ConvhubError) and e.message.startswith("Lease not held")
    assert LeaseNotHeld("custom", job_id=3).fields == {"job_id": 3}


def test_settings_defaults_and_errors(tmp_path):
    s = load_settings({"CONVHUB_DATA_DIR": str(tmp_path)})
    assert s.database_url == f"sqlite:///{tmp_path / 'convhub.db'}"
    assert s.broker_url == f"sqla+sqlite:///{tmp_path / 'broker.db'}"
    assert s.lease_seconds == 300 and s.max_attempts == 3 and s.max_document_bytes == 100 * 1024 * 1024
    assert s.visibility_timeout_seconds > s.max_lease_total_seconds + s.lease_seconds
    for env, name in [
        ({"CONVHUB_LEASE_SECONDS": "abc"}, "CONVHUB_LEASE_SECONDS"),
        ({"CONVHUB_MAX_ATTEMPTS": "0"}, "CONVHUB_MAX_ATTEMPTS"),
        ({"CONVHUB_DATABASE_URL": "mysql://x"}, "CONVHUB_DATABASE_URL"),
        ({"CONVHUB_BROKER_URL": "nonsense"}, "CONVHUB_BROKER_URL"),
        ({"CONVHUB_CALLBACK_ALLOW_PRIVATE": "maybe"}, "CONVHUB_CALLBACK_ALLOW_PRIVATE"),
        ({"CONVHUB_LOG_LEVEL": "LOUD"}, "CONVHUB_LOG_LEVEL"),
    ]:
        with pytest.raises(ConfigError, match=name):
            load_settings(env)



def test_a_secret_with_a_nul_never_verifies():
    # HMAC pads short keys with NULs, so scrypt alone would take "s\x00" for "s" (found by the hostile corpus).
    from app.domain.credentials import hash_secret, verify_secret

    stored = hash_secret("factory-secret", n=2**4)
    assert verify_secret("factory-secret", stored)
    assert not verify_secret("factory-secret\x00", stored)
    assert not verify_secret("factory-secret\x00\x00", stored)
