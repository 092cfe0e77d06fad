"""The domain owns every job state, the internal DELETED one included, and names its sets."""

from __future__ import annotations

from app.domain.states import DELETABLE, DELETED, IN_FLIGHT, TERMINAL, WIRE_STATES, JobState


def test_deleted_is_internal_never_a_wire_state():
    assert DELETED not in WIRE_STATES
    assert DELETED not in {int(s) for s in JobState}
    assert WIRE_STATES == {0, 1, 2, 3, 4}


def test_named_sets_partition_the_wire_states():
    assert set(DELETABLE) | set(IN_FLIGHT) == set(JobState)
    assert not set(DELETABLE) & set(IN_FLIGHT)
    assert set(TERMINAL) == {s for s in JobState if s.terminal}
    assert set(IN_FLIGHT) == {s for s in JobState if s.in_flight}
