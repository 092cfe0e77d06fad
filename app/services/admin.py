"""Operator use cases: clients, factories, job lookups."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import bindparam, func, or_, select, update
from sqlalchemy.orm import Session, selectinload

from app.db.models import ClientApplication, Comparison, Content, Factory, FactoryWorker, Job, Result
from app.db.removal import remove_comparisons, remove_contents, remove_jobs
from app.domain.credentials import hash_secret, verify_secret
from app.domain.errors import BadArgument, NotFound
from app.domain.matching import WorkerSpec
from app.domain.states import DELETED, IN_FLIGHT, JobState
from app.services.auth import factory_workers


def add_client(
    session: Session,
    now: datetime,
    name: str,
    secret: str,
    *,
    weight: int = 1,
    max_queued: int | None = None,
    max_in_flight: int | None = None,
) -> ClientApplication:
    _check_policy(weight, max_queued, max_in_flight)
    if UNSET in (max_queued, max_in_flight):
        raise BadArgument("max_queued and max_in_flight must be at least 1 (omit them for the defaults)")
    name = name.strip()
    if not name:
        raise BadArgument("client name is empty")
    if session.scalar(select(ClientApplication.id).where(ClientApplication.name == name)) is not None:
        raise BadArgument(f"client {name!r} exists already")
    row = ClientApplication(
        name=name, secret_hash=hash_secret(secret), created_at=now, disabled=False, weight=weight,
        vtime=0.0, max_queued=max_queued, max_in_flight=max_in_flight,
    )
    session.add(row)
    session.flush()
    return row


def client_by_name(session: Session, name: str) -> ClientApplication:
    row = session.scalar(select(ClientApplication).where(ClientApplication.name == name))
    if row is None:
        raise NotFound(f"no client named {name!r}")
    return row


def list_clients(session: Session) -> list[dict[str, object]]:
    counts = dict(
        session.execute(select(Job.client_id, func.count()).where(Job.state != DELETED).group_by(Job.client_id)).all()
    )
    return [
        {
            "name": c.name, "jobs": counts.get(c.id, 0), "disabled": c.disabled,
            "created": c.created_at.isoformat(timespec="seconds"), "weight": c.weight,
            "max_queued": "default" if c.max_queued is None else c.max_queued,
            "max_in_flight": "unlimited" if c.max_in_flight is None else c.max_in_flight,
            "id": c.id,  # the `client` label of /metrics' per-client gauges
        }
        for c in session.scalars(select(ClientApplication).order_by(ClientApplication.name))
    ]


# ---------------------------------------------------------------- farm policy per client

UNSET = -1  # `set_client`: a limit given as this is reset (max_queued to the setting, max_in_flight to unlimited)


def _check_policy(weight: int | None, max_queued: int | None, max_in_flight: int | None) -> None:
    if weight is not None and not 1 <= weight <= 1000:
        raise BadArgument("weight must be between 1 and 1000")
    for label, value in (("max_queued", max_queued), ("max_in_flight", max_in_flight)):
        if value is not None and value != UNSET and value < 1:
            raise BadArgument(f"{label} must be at least 1 (or {UNSET} to reset it)")


def set_client(
    session: Session,
    name: str,
    *,
    weight: int | None = None,
    max_queued: int | None = None,
    max_in_flight: int | None = None,
) -> ClientApplication:
    """Change a client's weight and limits (None: unchanged; UNSET: back to the default).

    A new weight takes effect at once: the client's QUEUED jobs are tagged again from the system's
    virtual time V, in their current order, 1/weight apart from V on (one UPDATE per queued job of the client;
    an operator command, not a hot path)."""
    from app.services.submission import virtual_time

    _check_policy(weight, max_queued, max_in_flight)
    client = client_by_name(session, name)
    if max_queued is not None:
        client.max_queued = None if max_queued == UNSET else max_queued
    if max_in_flight is not None:
        client.max_in_flight = None if max_in_flight == UNSET else max_in_flight
    if weight is not None and weight != client.weight:
        # Lock the client's row first: submissions of this client wait until the new tags are in.
        session.execute(select(ClientApplication.id).where(ClientApplication.id == client.id).with_for_update())
        v = virtual_time(session)
        queued = session.execute(
            select(Job.id).where(Job.client_id == client.id, Job.state == int(JobState.QUEUED)).order_by(Job.vtag, Job.id)
        ).scalars().all()
        rows = [{"b_id": job_id, "b_vtag": v + i / weight} for i, job_id in enumerate(queued)]
        if rows:
            jobs = Job.__table__
            retag = update(jobs).where(jobs.c.id == bindparam("b_id")).values(vtag=bindparam("b_vtag"))  # type: ignore[arg-type]
            session.connection().execute(retag, rows)
            client.vtime = v + len(rows) / weight
        client.weight = weight
    session.flush()
    return client


def remove_client(session: Session, name: str) -> None:
    """Remove a client and everything it owns (jobs, results, uploads, comparisons and their bytes)."""
    client = client_by_name(session, name)
    remove_comparisons(session, list(session.scalars(select(Comparison.id).where(Comparison.client_id == client.id)).all()))
    ids = list(session.scalars(select(Job.id).where(Job.client_id == client.id)).all())
    for i in range(0, len(ids), 5000):
        remove_jobs(session, ids[i : i + 5000])
    remove_contents(session, list(session.scalars(select(Content.id).where(Content.client_id == client.id)).all()))
    session.delete(client)


def add_factory(session: Session, now: datetime, name: str, secret: str, workers: list[WorkerSpec]) -> Factory:
    name = name.strip()
    if not name:
        raise BadArgument("factory name is empty")
    if not workers:
        raise BadArgument("a factory needs at least one --worker")
    if session.scalar(select(Factory.id).where(Factory.name == name)) is not None:
        raise BadArgument(f"factory {name!r} exists already")
    row = Factory(name=name, secret_hash=hash_secret(secret), created_at=now, disabled=False)
    row.workers = [
        FactoryWorker(application=w.application, version=w.version, doctypes=",".join(sorted(w.doctypes)), formats=",".join(sorted(w.formats)))
        for w in workers
    ]
    session.add(row)
    session.flush()
    return row


def ensure_factory(session: Session, now: datetime, name: str, secret: str, workers: list[WorkerSpec]) -> bool:
    """Register a factory or bring an existing one up to date (secret and worker list), idempotently;
    its disabled flag is left as the operator set it. True when anything changed."""
    row = session.scalar(select(Factory).where(Factory.name == name.strip()).options(selectinload(Factory.workers)))
    if row is None:
        add_factory(session, now, name, secret, workers)
        return True
    changed = False
    if not verify_secret(secret, row.secret_hash):
        row.secret_hash = hash_secret(secret)
        changed = True
    wanted = sorted((w.application, w.version, ",".join(sorted(w.doctypes)), ",".join(sorted(w.formats))) for w in workers)
    have = sorted((w.application, w.version, w.doctypes, w.formats) for w in row.workers)
    if wanted != have:
        if not workers:
            raise BadArgument("a factory needs at least one worker")
        row.workers = [FactoryWorker(application=a, version=v, doctypes=d, formats=f) for a, v, d, f in wanted]
        changed = True
    session.flush()
    return changed


def factory_by_name(session: Session, name: str) -> Factory:
    row = session.scalar(select(Factory).where(Factory.name == name).options(selectinload(Factory.workers)))
    if row is None:
        raise NotFound(f"no factory named {name!r}")
    return row


def set_factory_disabled(session: Session, name: str, disabled: bool) -> None:
    factory_by_name(session, name).disabled = disabled


def list_factories(session: Session) -> list[dict[str, object]]:
    leases = dict(
        session.execute(
            select(Job.lease_owner, func.count()).where(Job.state.in_([int(s) for s in IN_FLIGHT])).group_by(Job.lease_owner)
        ).all()
    )
    out = []
    for f in session.scalars(select(Factory).options(selectinload(Factory.workers)).order_by(Factory.name)):
        out.append(
            {
                "name": f.name,
                "disabled": f.disabled,
                "last_poll": f.last_poll_at.isoformat(timespec="seconds") if f.last_poll_at else "never",
                "leases": leases.get(f.name, 0),
                "workers": "; ".join(w.format() for w in factory_workers(f)),
            }
        )
    return out


def served_pairs(session: Session, *, include_disabled: bool = False) -> set[tuple[str, str]]:
    """(application, version) pairs some registered factory serves (enabled ones unless asked)."""
    q = select(FactoryWorker.application, FactoryWorker.version).join(Factory, Factory.id == FactoryWorker.factory_id)
    if not include_disabled:
        q = q.where(Factory.disabled.is_(False))
    return {(a, v) for a, v in session.execute(q.distinct()).all()}


def served_targets(session: Session) -> list[WorkerSpec]:
    """(application, version, doctypes, formats) served by enabled factories, merged per pair."""
    merged: dict[tuple[str, str], tuple[set[str], set[str]]] = {}
    rows = session.execute(
        select(FactoryWorker).join(Factory, Factory.id == FactoryWorker.factory_id).where(Factory.disabled.is_(False))
    ).scalars()
    for w in rows:
        d, f = merged.setdefault((w.application, w.version), (set(), set()))
        d.update(x for x in w.doctypes.split(",") if x)
        f.update(x for x in w.formats.split(",") if x)
    return [WorkerSpec(a, v, frozenset(d), frozenset(f)) for (a, v), (d, f) in sorted(merged.items())]


def resolve_job_id(session: Session, ref: str) -> int:
    ref = ref.strip()
    if not ref.isprintable():  # PostgreSQL refuses a NUL in a string parameter: no such job either way
        raise NotFound(f"no job {ref[:80]!r}")
    q = select(Job.id).where(Job.state != DELETED)
    q = q.where(or_(Job.id == int(ref), Job.guid == ref)) if ref.isdigit() else q.where(Job.guid == ref)
    job_id = session.scalar(q)
    if job_id is None:
        raise NotFound(f"no job {ref!r}")
    return int(job_id)


def job_info(session: Session, job: Job) -> dict[str, object]:
    client = session.get(ClientApplication, job.client_id)
    result = session.scalar(select(Result).where(Result.job_id == job.id))
    return {
        "jobId": job.id,
        "guid": job.guid,
        "state": JobState(job.state).name if job.state != DELETED else "DELETED",
        "jobStatus": job.state,
        "client": client.name if client else None,
        "application": job.application,
        "version": job.version,
        "doctype": job.doctype,
        "format": job.format,
        "pages": f"{job.page_start}-{job.page_end or ''}",
        "submitted": job.submitted_at.isoformat(),
        "updated": job.updated_at.isoformat(),
        "attempts": job.attempts,
        "maxAttempts": job.max_attempts,
        "leaseOwner": job.lease_owner,
        "leaseExpires": job.lease_expires.isoformat() if job.lease_expires else None,
        "failureReason": job.failure_reason,
        "cachedFrom": job.cached_from,  # result cache: the job whose stored result this one shares
        "followsJob": job.follows_job_id,  # result cache: the identical job this QUEUED one completes with
        "cancelRequested": bool(job.cancel_requested),
        "result": {"guid": result.guid, "format": result.format, "filename": result.filename} if result else None,
    }


def show_job(session: Session, ref: str) -> dict[str, object]:
    job = session.get(Job, resolve_job_id(session, ref))
    assert job is not None
    return job_info(session, job)


def list_jobs(session: Session, *, state: int | None = None, client: str | None = None, limit: int = 50) -> list[dict[str, object]]:
    q = select(Job, ClientApplication.name).join(ClientApplication, ClientApplication.id == Job.client_id)
    q = q.where(Job.state == state) if state is not None else q.where(Job.state != DELETED)
    if client:
        q = q.where(ClientApplication.name == client)
    q = q.order_by(Job.id.desc()).limit(limit)
    return [
        {
            "id": j.id,
            "guid": j.guid,
            "state": JobState(j.state).name,
            "client": name,
            "application": j.application,
            "version": j.version,
            "format": j.format or "-",
            "attempts": j.attempts,
            "submitted": j.submitted_at.isoformat(timespec="seconds"),
        }
        for j, name in session.execute(q).all()
    ]
