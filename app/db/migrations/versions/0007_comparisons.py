"""rendering comparisons (contentConvertAll, getContentComparison, /ops/comparisons)

Revision ID: 0007
Revises: 0005
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
UTC = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "comparisons",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("client_id", sa.Integer(), sa.ForeignKey("client_applications.id", ondelete="CASCADE"), nullable=False),
        sa.Column("filename", sa.String(500), nullable=False),
        sa.Column("format", sa.String(10), nullable=False),
        sa.Column("state", sa.SmallInteger(), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("sent_at", UTC, nullable=True),
        sa.Column("started_at", UTC, nullable=True),
        sa.Column("finished_at", UTC, nullable=True),
        sa.Column("dpi", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
    )
    op.create_index("ix_comparisons_client_id", "comparisons", ["client_id"])
    op.create_index("ix_comparisons_created_at", "comparisons", ["created_at"])
    op.create_index(
        "ix_comparisons_open", "comparisons", ["state"],
        postgresql_where=sa.text("state IN (0, 1)"), sqlite_where=sa.text("state IN (0, 1)"),
    )
    op.create_table(
        "comparison_jobs",
        sa.Column("comparison_id", BigId, sa.ForeignKey("comparisons.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("position", sa.Integer(), primary_key=True),
        sa.Column("job_id", sa.BigInteger(), nullable=False),
        sa.Column("application", sa.String(200), nullable=False),
        sa.Column("version", sa.String(100), nullable=False),
        sa.Column("page_count", sa.Integer(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
    )
    op.create_index("ix_comparison_jobs_job_id", "comparison_jobs", ["job_id"])
    op.create_table(
        "comparison_pages",
        sa.Column("comparison_id", BigId, sa.ForeignKey("comparisons.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("job_id", sa.BigInteger(), primary_key=True),
        sa.Column("page", sa.Integer(), primary_key=True),
        sa.Column("blob_id", BigId, sa.ForeignKey("blobs.id"), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
    )
    op.create_index("ix_comparison_pages_blob_id", "comparison_pages", ["blob_id"])
    op.create_table(
        "comparison_scores",
        sa.Column("comparison_id", BigId, sa.ForeignKey("comparisons.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("job_a", sa.BigInteger(), primary_key=True),
        sa.Column("job_b", sa.BigInteger(), primary_key=True),
        sa.Column("page", sa.Integer(), primary_key=True),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("missing", sa.String(1), nullable=True),
        sa.Column("diff_blob_id", BigId, sa.ForeignKey("blobs.id"), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("comparison_scores")
    op.drop_table("comparison_pages")
    op.drop_index("ix_comparison_jobs_job_id", table_name="comparison_jobs")
    op.drop_table("comparison_jobs")
    op.drop_index("ix_comparisons_open", table_name="comparisons")
    op.drop_index("ix_comparisons_created_at", table_name="comparisons")
    op.drop_index("ix_comparisons_client_id", table_name="comparisons")
    op.drop_table("comparisons")
