"""Operator use cases: clients, factories, job lookups."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session, selectinload

from app.db.models import ClientApplication, Content, Factory, FactoryWorker, Job, Result
from app.db.removal import remove_contents, remove_jobs
from app.domain.credentials import hash_secret
from app.domain.errors import BadArgument, NotFound
from app.domain.matching import WorkerSpec
from app.domain.states import DELETED, IN_FLIGHT, JobState
from app.services.auth import factory_workers


def add_client(session: Session, now: datetime, name: str, secret: str) -> ClientApplication:
    name = name.strip()
    if not name:
        raise BadArgument("client name is empty")
    if session.scalar(select(ClientApplication.id).where(ClientApplication.name == name)) is not None:
        raise BadArgument(f"client {name!r} exists already")
    row = ClientApplication(name=name, secret_hash=hash_secret(secret), created_at=now, disabled=False)
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
        {"name": c.name, "jobs": counts.get(c.id, 0), "disabled": c.disabled, "created": c.created_at.isoformat(timespec="seconds")}
        for c in session.scalars(select(ClientApplication).order_by(ClientApplication.name))
    ]


def remove_client(session: Session, name: str) -> None:
    """Remove a client and everything it owns."""
    client = client_by_name(session, name)
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
