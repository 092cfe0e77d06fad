"""Job states (integer jobStatus on the wire) and their legal transitions."""

from __future__ import annotations

from enum import IntEnum

from app.domain.errors import BadJobState


class JobState(IntEnum):
    QUEUED = 0
    REQUESTED_FOR_PROCESSING = 1
    PROCESSING = 2
    COMPLETE = 3
    FAILED = 4

    @property
    def in_flight(self) -> bool:
        """Held by a factory under a lease: clients cannot delete it (518)."""
        return self in (JobState.REQUESTED_FOR_PROCESSING, JobState.PROCESSING)

    @property
    def terminal(self) -> bool:
        return self in (JobState.COMPLETE, JobState.FAILED)


IN_FLIGHT = (JobState.REQUESTED_FOR_PROCESSING, JobState.PROCESSING)
# Not held by a factory: a client may delete these (in-flight ones are refused with 518).
DELETABLE = (JobState.QUEUED, JobState.COMPLETE, JobState.FAILED)
# Ended: retention removes these once they are old enough.
TERMINAL = (JobState.COMPLETE, JobState.FAILED)
# The jobStatus values a client may send or see.
WIRE_STATES = frozenset(int(s) for s in JobState)

# Internal state of a job its client removed: excluded from every listing, count and claim until
# beat purges the row. Deliberately not a JobState member: it never appears on the wire (SOAP
# refuses jobStatus 9 like any other unknown value) and is no part of the transition table.
DELETED = 9

# from-state -> allowed to-states
TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.QUEUED: frozenset({JobState.REQUESTED_FOR_PROCESSING, JobState.PROCESSING, JobState.FAILED}),
    JobState.REQUESTED_FOR_PROCESSING: frozenset(
        {JobState.PROCESSING, JobState.COMPLETE, JobState.QUEUED, JobState.FAILED}
    ),
    JobState.PROCESSING: frozenset({JobState.PROCESSING, JobState.COMPLETE, JobState.QUEUED, JobState.FAILED}),
    JobState.COMPLETE: frozenset({JobState.QUEUED}),  # operator requeue only
    JobState.FAILED: frozenset({JobState.QUEUED}),  # operator requeue only
}


def can_transition(src: JobState, dst: JobState) -> bool:
    return dst in TRANSITIONS[src]


def require_transition(src: int, dst: JobState) -> None:
    """Raise BadJobState unless `src -> dst` is legal; every state change in the services passes here."""
    current = JobState(src)
    if not can_transition(current, dst):
        raise BadJobState(f"a {current.name} job cannot become {dst.name}")
