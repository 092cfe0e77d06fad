"""SQLAlchemy 2 models. The schema itself is owned by the Alembic migrations."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

# SQLite has no 64-bit autoincrement BIGINT primary key; an INTEGER primary key there is 64-bit anyway.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on both databases (SQLite stores naive UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        from datetime import UTC

        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        from datetime import UTC

        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    pass


class ClientApplication(Base):
    __tablename__ = "client_applications"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(300))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Factory(Base):
    __tablename__ = "factories"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(300))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_poll_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    workers: Mapped[list[FactoryWorker]] = relationship(
        back_populates="factory", cascade="all, delete-orphan", order_by="FactoryWorker.id"
    )


class FactoryWorker(Base):
    __tablename__ = "factory_workers"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    factory_id: Mapped[int] = mapped_column(ForeignKey("factories.id", ondelete="CASCADE"), index=True)
    application: Mapped[str] = mapped_column(String(200))
    version: Mapped[str] = mapped_column(String(100))
    doctypes: Mapped[str] = mapped_column(String(100))  # comma-separated
    formats: Mapped[str] = mapped_column(String(100))  # comma-separated
    factory: Mapped[Factory] = relationship(back_populates="workers")


class Blob(Base):
    """Bytes of an upload or a result, stored as ordered chunks so nothing needs them whole in memory."""

    __tablename__ = "blobs"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class BlobChunk(Base):
    __tablename__ = "blob_chunks"
    blob_id: Mapped[int] = mapped_column(ForeignKey("blobs.id", ondelete="CASCADE"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class Content(Base):
    """An uploaded document; one upload can feed many jobs."""

    __tablename__ = "contents"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    identifier: Mapped[str] = mapped_column(String(36), unique=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("client_applications.id", ondelete="CASCADE"), index=True)
    blob_id: Mapped[int] = mapped_column(ForeignKey("blobs.id"), index=True)
    filename: Mapped[str] = mapped_column(String(500))
    doctype: Mapped[str] = mapped_column(String(10))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class Job(Base):
    __tablename__ = "jobs"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)  # the SOAP jobId, rising with submission
    guid: Mapped[str] = mapped_column(String(36), unique=True)  # the XML-RPC `job`
    client_id: Mapped[int] = mapped_column(ForeignKey("client_applications.id", ondelete="CASCADE"))
    content_id: Mapped[int] = mapped_column(ForeignKey("contents.id"), index=True)
    application: Mapped[str] = mapped_column(String(200))
    version: Mapped[str] = mapped_column(String(100))
    doctype: Mapped[str] = mapped_column(String(10))
    format: Mapped[str] = mapped_column(String(10))
    page_start: Mapped[int] = mapped_column(Integer, default=1)
    page_end: Mapped[int] = mapped_column(Integer, default=0)
    state: Mapped[int] = mapped_column(SmallInteger)
    submitted_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer)
    lease_token: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lease_owner: Mapped[str | None] = mapped_column(String(200), nullable=True)
    leased_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    lease_expires: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)  # last COMPLETE/FAILED (trends)
    failure_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    success_url: Mapped[str | None] = mapped_column(Text, nullable=True)
    failure_url: Mapped[str | None] = mapped_column(Text, nullable=True)

    __table_args__ = (
        # The claim path: per (application, version), QUEUED rows oldest first. Partial, so it holds
        # only the backlog and a poll never sorts it. Ordered by (submitted_at, id), an order the
        # primary key cannot provide, so the planner cannot prefer a primary-key walk that steps
        # over every finished job in front of the backlog.
        Index(
            "ix_jobs_queued_pair",
            "application",
            "version",
            "submitted_at",
            "id",
            postgresql_where=text("state = 0"),
            sqlite_where=text("state = 0"),
        ),
        # Client views: counts per state, listing per state in id order.
        Index("ix_jobs_client_state_id", "client_id", "state", "id"),
        # Range deletes by submission time.
        Index("ix_jobs_client_submitted", "client_id", "submitted_at"),
        # Lease reclaim: only rows under a lease.
        Index(
            "ix_jobs_lease_expires",
            "lease_expires",
            postgresql_where=text("state IN (1, 2)"),
            sqlite_where=text("state IN (1, 2)"),
        ),
        # Retention and purge of removed/ended jobs.
        Index("ix_jobs_state_updated", "state", "updated_at"),
        # Trends: completions and failures per minute (app.services.trends).
        Index("ix_jobs_finished_at", "finished_at"),
    )


class Result(Base):
    __tablename__ = "results"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    guid: Mapped[str] = mapped_column(String(36), unique=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), unique=True)
    blob_id: Mapped[int] = mapped_column(ForeignKey("blobs.id"), index=True)
    format: Mapped[str] = mapped_column(String(10))
    filename: Mapped[str] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class RangeDelete(Base):
    """A client's deleteContentConversions request: jobs are hidden at once, purged by beat."""

    __tablename__ = "range_deletes"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("client_applications.id", ondelete="CASCADE"), index=True)
    delete_from: Mapped[datetime] = mapped_column(UTCDateTime)
    delete_to: Mapped[datetime] = mapped_column(UTCDateTime)
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime)
    deleted_count: Mapped[int] = mapped_column(Integer, default=0)
    skipped_count: Mapped[int] = mapped_column(Integer, default=0)
    purged_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True, index=True)


class Callback(Base):
    """Outbox of HTTP callbacks; the database, not the broker, holds what is still owed."""

    __tablename__ = "callbacks"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    job_id: Mapped[int] = mapped_column(BigInteger, index=True)
    url: Mapped[str] = mapped_column(Text)
    job_status: Mapped[int] = mapped_column(SmallInteger)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    done_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index(
            "ix_callbacks_due",
            "next_attempt_at",
            postgresql_where=text("done_at IS NULL"),
            sqlite_where=text("done_at IS NULL"),
        ),
    )


class Counter(Base):
    """Monotonic totals of events that happen in any process (Celery workers included), kept in the
    shared database so /metrics on any web process reports them and they survive restarts."""

    __tablename__ = "counters"
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger, default=0)


class TrendSnapshot(Base):
    """One minute of the ops page's trends, recorded by beat (app.services.trends).

    `at` is the minute boundary; `completed`/`failed` count the jobs that finished in the minute before
    it, `backlog`/`in_flight` are the counts when it was recorded. One row per (application, version)
    with anything to report, plus the overall row (application = version = "") written every minute.
    """

    __tablename__ = "trend_snapshots"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    application: Mapped[str] = mapped_column(String(200))
    version: Mapped[str] = mapped_column(String(100))
    backlog: Mapped[int] = mapped_column(Integer)
    in_flight: Mapped[int] = mapped_column(Integer)
    completed: Mapped[int] = mapped_column(Integer)
    failed: Mapped[int] = mapped_column(Integer)

    # Also the index of every read (a time range) and of pruning (everything before a time).
    __table_args__ = (UniqueConstraint("at", "application", "version", name="uq_trend_snapshots_minute"),)


class RequestId(Base):
    """A client's requestId on contentUpload / contentConvert and the first call's answer.

    Written in the transaction that created the upload or the job, so an answer is remembered
    exactly when what it names exists. Removed by retention (app.services.maintenance).
    """

    __tablename__ = "request_ids"
    client_id: Mapped[int] = mapped_column(ForeignKey("client_applications.id", ondelete="CASCADE"), primary_key=True)
    operation: Mapped[str] = mapped_column(String(40), primary_key=True)
    request_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))  # sha256 of the request's fields
    answer: Mapped[str] = mapped_column(String(100))  # the contentIdentifier or the jobId
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
