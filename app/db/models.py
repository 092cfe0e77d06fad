"""SQLAlchemy 2 models. The schema itself is owned by the Alembic migrations."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
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
    # Farm policy (docs/operations.md, "Fair share and quotas"): the client's share weight, its
    # virtual time (the last fair-share tag it was given) and its quotas (NULL max_queued = the
    # setting CONVHUB_CLIENT_MAX_QUEUED; NULL max_in_flight = unlimited).
    weight: Mapped[int] = mapped_column(Integer, default=1, server_default=text("1"))
    vtime: Mapped[float] = mapped_column(Float, default=0.0, server_default=text("0"))
    max_queued: Mapped[int | None] = mapped_column(Integer, nullable=True)
    max_in_flight: Mapped[int | None] = mapped_column(Integer, nullable=True)

    __table_args__ = (
        Index("ix_client_applications_vtime", "vtime"),
        # The clients with an in-flight limit: the claim's "not blocked" check reads only these.
        Index(
            "ix_client_applications_limited",
            "id",
            postgresql_where=text("max_in_flight IS NOT NULL"),
            sqlite_where=text("max_in_flight IS NOT NULL"),
        ),
    )


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
    sha256: Mapped[str] = mapped_column(String(64))  # computed while the bytes are stored (blobs.store_blob)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)

    # Quarantine: a content hash's queued jobs (app.services.quarantine).
    __table_args__ = (Index("ix_blobs_sha256", "sha256"),)


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
    # Result cache (app.services.result_cache): sha256 of (content sha256, application, version,
    # format, pageStart, pageEnd); the job a QUEUED follower completes with; the job whose stored
    # result this one shares (getContentConvertStatus's cachedFrom).
    cache_key: Mapped[str | None] = mapped_column(String(64), nullable=True)
    follows_job_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    cached_from: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # cancelContentConversion on an in-flight job: the factory learns it on its next jobs.extend.
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))

    # Fair share: 0-9, higher first within the client's own jobs; `vtag` is the job's virtual-time
    # tag, given at submit (app.services.submission.fair_tag); polls serve the smallest.
    priority: Mapped[int] = mapped_column(SmallInteger, default=5, server_default=text("5"))
    vtag: Mapped[float] = mapped_column(Float, default=0.0, server_default=text("0"))

    __table_args__ = (
        # The claim path: per (application, version), QUEUED rows by fair-share tag. Partial, so it
        # holds only the backlog and a poll never sorts it; the primary key cannot give this order,
        # so the planner cannot prefer a primary-key walk over every finished job. Followers of a
        # cached conversion (follows_job_id set) are not claimable and stay out of it.
        Index(
            "ix_jobs_queued_vtag",
            "application",
            "version",
            "vtag",
            "id",
            postgresql_where=text("state = 0 AND follows_job_id IS NULL"),
            sqlite_where=text("state = 0 AND follows_job_id IS NULL"),
        ),
        # Result cache: the leader of a key; the followers of a leader.
        Index("ix_jobs_cache_key", "cache_key", "client_id", postgresql_where=text("cache_key IS NOT NULL"), sqlite_where=text("cache_key IS NOT NULL")),
        Index(
            "ix_jobs_follows",
            "follows_job_id",
            postgresql_where=text("follows_job_id IS NOT NULL"),
            sqlite_where=text("follows_job_id IS NOT NULL"),
        ),
        # A client's own next job in a pair: highest priority, then oldest (the claim's second step).
        Index(
            "ix_jobs_queued_client_priority",
            "client_id",
            "application",
            "version",
            text("priority DESC"),
            "id",
            postgresql_where=text("state = 0"),
            sqlite_where=text("state = 0"),
        ),
        # The system's virtual time at submit: the smallest tag in the backlog, one probe.
        Index("ix_jobs_queued_min_vtag", "vtag", postgresql_where=text("state = 0"), sqlite_where=text("state = 0")),
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
        # Trends: completions and failures per minute (app.services.trends). Partial: a job that has
        # not ended (or a bulk change of unfinished ones, e.g. a range delete) adds no entry.
        Index("ix_jobs_finished_at", "finished_at", postgresql_where=text("finished_at IS NOT NULL"), sqlite_where=text("finished_at IS NOT NULL")),
    )


class Result(Base):
    __tablename__ = "results"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    guid: Mapped[str] = mapped_column(String(36), unique=True)
    # PostgreSQL has no constraint behind this key since migration 0009 (its cascade trigger ran once
    # per job a range delete removed): every removal deletes a job's result with the job.
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), unique=True)
    blob_id: Mapped[int] = mapped_column(ForeignKey("blobs.id"), index=True)
    format: Mapped[str] = mapped_column(String(10))
    filename: Mapped[str] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Quarantine(Base):
    """A content hash that failed permanently, or hung, on 2 distinct factories (app.services.quarantine).

    One row per hash: releasing it sets `released_at`; quarantining it again resets the row."""

    __tablename__ = "quarantine"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    reason: Mapped[str] = mapped_column(Text)
    factories: Mapped[str] = mapped_column(Text)  # comma-separated factory names
    since: Mapped[datetime] = mapped_column(UTCDateTime)
    released_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class ContentStrike(Base):
    """One permanent failure or expired lease of a content hash on a factory; quarantine counts the
    distinct factories. Removed when the hash is released."""

    __tablename__ = "content_strikes"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    factory: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(UTCDateTime)


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


class PurgeItem(Base):
    """What a range delete left for beat's purge (app.services.maintenance.purge_deleted): the range
    delete removes its jobs' rows at once (a DELETE writes no index entries, a soft-delete UPDATE of
    100k rows wrote ~6 per row) and records here the uploads its jobs used (`content_id`: removed when
    no job uses it any more) and their results' bytes (`blob_id`: freed when no result or upload
    references them any more). One of the two is set."""

    __tablename__ = "purge_items"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    content_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    blob_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


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


class JobCount(Base):
    """Jobs per (client, state), kept by triggers on jobs (migration 0008): on SQLite directly, on
    PostgreSQL as the fold of `JobCountDelta` rows (app.services.maintenance.fold_job_counts)."""

    __tablename__ = "job_counts"
    client_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    state: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    n: Mapped[int] = mapped_column(BigInteger)


class JobCountDelta(Base):
    """PostgreSQL: a change of `JobCount` not folded yet, appended by a statement on jobs (no row is
    updated in place, so concurrent claims and finishes never wait on a counter row)."""

    __tablename__ = "job_count_deltas"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    client_id: Mapped[int] = mapped_column(Integer, index=True)
    state: Mapped[int] = mapped_column(SmallInteger)
    n: Mapped[int] = mapped_column(BigInteger)


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


class Comparison(Base):
    """One document converted by every application that serves it (contentConvertAll), and the
    comparison of the renderings (app.services.comparison; rules in app.domain.comparison)."""

    __tablename__ = "comparisons"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)  # the SOAP comparisonId
    client_id: Mapped[int] = mapped_column(ForeignKey("client_applications.id", ondelete="CASCADE"), index=True)
    filename: Mapped[str] = mapped_column(String(500))
    format: Mapped[str] = mapped_column(String(10))
    state: Mapped[int] = mapped_column(SmallInteger)  # app.domain.comparison.ComparisonState
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)  # comparison task last sent
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    dpi: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)

    # The beat sweep reads only comparisons still waiting or running.
    __table_args__ = (
        Index("ix_comparisons_open", "state", postgresql_where=text("state IN (0, 1)"), sqlite_where=text("state IN (0, 1)")),
    )


class ComparisonJob(Base):
    """One rendering of a comparison: its job (no foreign key: a job may be purged first), and what
    the task found (page count, or why it has none)."""

    __tablename__ = "comparison_jobs"
    comparison_id: Mapped[int] = mapped_column(ForeignKey("comparisons.id", ondelete="CASCADE"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(BigInteger, index=True)
    application: Mapped[str] = mapped_column(String(200))
    version: Mapped[str] = mapped_column(String(100))
    page_count: Mapped[int | None] = mapped_column(Integer, nullable=True)
    note: Mapped[str | None] = mapped_column(Text, nullable=True)


class ComparisonPage(Base):
    """One rasterized page of a rendering (PNG at the comparison's DPI)."""

    __tablename__ = "comparison_pages"
    comparison_id: Mapped[int] = mapped_column(ForeignKey("comparisons.id", ondelete="CASCADE"), primary_key=True)
    job_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    page: Mapped[int] = mapped_column(Integer, primary_key=True)
    blob_id: Mapped[int] = mapped_column(ForeignKey("blobs.id"), index=True)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)


class ComparisonScore(Base):
    """The score of one page of one pair of renderings (job_a before job_b in submission order), and
    its difference image; `missing` ("a"/"b") instead of a score when only one of them has the page."""

    __tablename__ = "comparison_scores"
    comparison_id: Mapped[int] = mapped_column(ForeignKey("comparisons.id", ondelete="CASCADE"), primary_key=True)
    job_a: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    job_b: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    page: Mapped[int] = mapped_column(Integer, primary_key=True)
    score: Mapped[float | None] = mapped_column(Float, nullable=True)
    missing: Mapped[str | None] = mapped_column(String(1), nullable=True)
    diff_blob_id: Mapped[int | None] = mapped_column(ForeignKey("blobs.id"), nullable=True)
