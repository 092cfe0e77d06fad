"""Helpers of the trends tests: a factory's claim, finish and fail through the services, a snapshot."""

from __future__ import annotations

from app.domain.matching import WorkerSpec
from app.services import claims, leases, trends

WRITER_SPEC = WorkerSpec.parse("LibreOffice Writer|7.4|odt|pdf,png,odf")
CALC_SPEC = WorkerSpec.parse("LibreOffice Calc|7.4|ods|pdf")


def claim(rt, spec: WorkerSpec = WRITER_SPEC, owner: str = "factory-1"):  # type: ignore[no-untyped-def]
    with rt.db.session() as s:
        return claims.claim(s, rt.now(), rt.policy, owner=owner, workers=[spec])


def finish(rt, claimed, owner: str = "factory-1") -> None:  # type: ignore[no-untyped-def]
    with rt.db.session() as s:
        leases.finish(
            s, rt.now(), rt.notifier, guid=claimed.guid, owner=owner, token=claimed.lease_token, fmt="pdf",
            parts=b"%PDF-1.4 result", max_bytes=10**6,
        )


def fail(rt, claimed, owner: str = "factory-1", reason: str = "converter crashed"):  # type: ignore[no-untyped-def]
    with rt.db.session() as s:
        return leases.fail(
            s, rt.now(), rt.policy, rt.notifier, rt.mirror, guid=claimed.guid, owner=owner, token=claimed.lease_token,
            reason=reason,
        )


def record(rt) -> int:  # type: ignore[no-untyped-def]
    with rt.db.session() as s:
        return trends.record_snapshot(s, rt.now())
