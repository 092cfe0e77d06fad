"""per-minute trend snapshots for the ops page, and when each job finished

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "trend_snapshots",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("application", sa.String(length=200), nullable=False),
        sa.Column("version", sa.String(length=100), nullable=False),
        sa.Column("backlog", sa.Integer(), nullable=False),
        sa.Column("in_flight", sa.Integer(), nullable=False),
        sa.Column("completed", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("at", "application", "version", name="uq_trend_snapshots_minute"),
    )
    # A nullable column without a default: no table rewrite on PostgreSQL, a plain ADD COLUMN on SQLite.
    op.add_column("jobs", sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_jobs_finished_at", "jobs", ["finished_at"], unique=False)
    # Jobs that ended before this release last changed when they ended.
    op.execute("UPDATE jobs SET finished_at = updated_at WHERE state IN (3, 4)")


def downgrade() -> None:
    op.drop_index("ix_jobs_finished_at", table_name="jobs")
    # A plain DROP COLUMN (SQLite 3.35+): a batch copy of `jobs` would lose its partial indexes.
    op.drop_column("jobs", "finished_at")
    op.drop_table("trend_snapshots")
