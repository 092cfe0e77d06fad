"""The soak's lease checks (harness.lease_evidence) catch what they claim to catch: each rule broken
once in a made-up event log, and a correct log with answers arriving out of order passes."""

from __future__ import annotations

from datetime import UTC, datetime

from tests.soak.harness import lease_evidence

T = datetime(2026, 11, 30, 12, 0, 0, tzinfo=UTC).timestamp()
LEASE = 10


def _exp(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y%m%dT%H:%M:%S")


def handout(job: str, lease: str, granted: float, answered: float | None = None) -> dict:  # type: ignore[type-arg]
    return {"ev": "handout", "job": job, "lease": lease, "exp": _exp(granted + LEASE), "t0": granted - 0.01,
            "t": granted + 0.01 if answered is None else answered}


def finished(job: str, lease: str, t: float) -> dict:  # type: ignore[type-arg]
    return {"ev": "finished", "job": job, "lease": lease, "t": t}


def test_a_correct_log_passes_even_with_answers_out_of_order() -> None:
    events = [
        handout("j1", "a", T),  # its holder died; the lease expired at T+10
        handout("j1", "b", T + 12, answered=T + 14),
        finished("j1", "b", T + 15),
        # j2: the second hand-out's answer arrived before the first's (the first poll was slow).
        handout("j2", "c", T, answered=T + 13),
        handout("j2", "d", T + 11, answered=T + 11.5),
        finished("j2", "d", T + 12),
    ]
    ev = lease_evidence(events)
    assert (ev.stale, ev.overlaps, ev.after_complete, ev.multi_finish, ev.unconfirmed) == ([], [], [], [], [])


def test_a_finish_under_an_older_lease_is_stale() -> None:
    ev = lease_evidence([handout("j", "a", T), handout("j", "b", T + 11), finished("j", "a", T + 12)])
    assert ev.stale == [("j", "a", "b")]


def test_a_hand_out_before_the_previous_lease_expired_is_an_overlap() -> None:
    ev = lease_evidence([handout("j", "a", T), handout("j", "b", T + 5)])
    assert ev.overlaps == [("j", "a", "b")]


def test_a_hand_out_after_the_accepted_finish_and_two_finished_leases_are_duplicates() -> None:
    ev = lease_evidence([handout("j", "a", T), finished("j", "a", T + 1), handout("j", "b", T + 12), finished("j", "b", T + 13)])
    assert ev.after_complete == [("j", "b")]
    assert ev.multi_finish == ["j"]
    assert ev.stale == [("j", "a", "b")]


def test_a_job_without_an_accepted_finish_is_unconfirmed() -> None:
    assert lease_evidence([handout("j", "a", T)]).unconfirmed == ["j"]
