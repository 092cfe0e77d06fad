"""result cache, in-flight merging, quarantine and cancellation

Revision ID: 0005
Revises: 0003
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    # Nullable columns without a default (and one with a constant default): no table rewrite on PostgreSQL.
    op.add_column("jobs", sa.Column("cache_key", sa.String(length=64), nullable=True))
    op.add_column("jobs", sa.Column("follows_job_id", sa.BigInteger(), nullable=True))
    op.add_column("jobs", sa.Column("cached_from", sa.BigInteger(), nullable=True))
    op.add_column("jobs", sa.Column("cancel_requested", sa.Boolean(), server_default=sa.text("false"), nullable=False))
    op.create_index(
        "ix_jobs_cache_key", "jobs", ["cache_key", "client_id"],
        postgresql_where=sa.text("cache_key IS NOT NULL"), sqlite_where=sa.text("cache_key IS NOT NULL"),
    )
    op.create_index(
        "ix_jobs_follows", "jobs", ["follows_job_id"],
        postgresql_where=sa.text("follows_job_id IS NOT NULL"), sqlite_where=sa.text("follows_job_id IS NOT NULL"),
    )
    # Followers are not claimable: the claim index leaves them out.
    op.drop_index("ix_jobs_queued_vtag", table_name="jobs")
    op.create_index(
        "ix_jobs_queued_vtag", "jobs", ["application", "version", "vtag", "id"],
        postgresql_where=sa.text("state = 0 AND follows_job_id IS NULL"),
        sqlite_where=sa.text("state = 0 AND follows_job_id IS NULL"),
    )
    op.create_index("ix_blobs_sha256", "blobs", ["sha256"], unique=False)
    op.create_table(
        "quarantine",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("factories", sa.Text(), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("released_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("sha256"),
    )
    op.create_table(
        "content_strikes",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("factory", sa.String(length=200), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_content_strikes_sha256", "content_strikes", ["sha256"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_content_strikes_sha256", table_name="content_strikes")
    op.drop_table("content_strikes")
    op.drop_table("quarantine")
    op.drop_index("ix_blobs_sha256", table_name="blobs")
    op.drop_index("ix_jobs_queued_vtag", table_name="jobs")
    op.create_index(
        "ix_jobs_queued_vtag", "jobs", ["application", "version", "vtag", "id"],
        postgresql_where=sa.text("state = 0"), sqlite_where=sa.text("state = 0"),
    )
    op.drop_index("ix_jobs_follows", table_name="jobs")
    op.drop_index("ix_jobs_cache_key", table_name="jobs")
    # Plain DROP COLUMNs (SQLite 3.35+): a batch copy of `jobs` would lose its partial indexes.
    op.drop_column("jobs", "cancel_requested")
    op.drop_column("jobs", "cached_from")
    op.drop_column("jobs", "follows_job_id")
    op.drop_column("jobs", "cache_key")
