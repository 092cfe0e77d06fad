"""purge_items: what a range delete leaves for beat's purge (uploads and result bytes to check)

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30

A range delete (deleteContentConversions) on PostgreSQL now removes its jobs' rows in one DELETE
instead of marking them DELETED with an UPDATE (SQLite keeps the UPDATE, cheaper there): on PostgreSQL a DELETE only stamps the rows, while the UPDATE
wrote a new row version and an entry in ~6 indexes per row (100k rows: 160 MB of WAL, seconds).
The uploads the removed jobs used and their results' bytes are recorded here, for beat to free when
nothing references them any more. No index: beat reads and deletes in id order.

PostgreSQL: results.job_id loses its foreign key (ON DELETE CASCADE). Its per-row trigger probed
`results` once per deleted job, 100,000 calls for a 100k range delete (0.65 of its 1.07 s at 1M
jobs); the range delete deletes the results of its jobs in the same statement instead, and every
other removal (app.db.removal) deletes results before their jobs already. SQLite keeps it (a
constraint there cannot be dropped without rebuilding the table; its cascade finds nothing left).
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "purge_items",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("content_id", sa.BigInteger(), nullable=True),
        sa.Column("blob_id", sa.BigInteger(), nullable=True),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.drop_constraint("results_job_id_fkey", "results", type_="foreignkey")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DELETE FROM results WHERE NOT EXISTS (SELECT 1 FROM jobs WHERE jobs.id = results.job_id)")
        op.create_foreign_key("results_job_id_fkey", "results", "jobs", ["job_id"], ["id"], ondelete="CASCADE")
    op.drop_table("purge_items")
