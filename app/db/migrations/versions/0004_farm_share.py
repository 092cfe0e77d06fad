"""farm policy: fair-share weight, virtual time and quotas per client; priority and tag per job

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_QUEUED = sa.text("state = 0")


def upgrade() -> None:
    # Columns with constant defaults: no table rewrite on PostgreSQL 11+, a plain ADD COLUMN on SQLite.
    op.add_column("client_applications", sa.Column("weight", sa.Integer(), nullable=False, server_default=sa.text("1")))
    op.add_column("client_applications", sa.Column("vtime", sa.Float(), nullable=False, server_default=sa.text("0")))
    op.add_column("client_applications", sa.Column("max_queued", sa.Integer(), nullable=True))
    op.add_column("client_applications", sa.Column("max_in_flight", sa.Integer(), nullable=True))
    op.create_index("ix_client_applications_vtime", "client_applications", ["vtime"], unique=False)
    _limited = sa.text("max_in_flight IS NOT NULL")
    op.create_index(
        "ix_client_applications_limited", "client_applications", ["id"], unique=False,
        postgresql_where=_limited, sqlite_where=_limited,
    )
    op.add_column("jobs", sa.Column("priority", sa.SmallInteger(), nullable=False, server_default=sa.text("5")))
    op.add_column("jobs", sa.Column("vtag", sa.Float(), nullable=False, server_default=sa.text("0")))
    # Jobs not yet ended keep today's order: their tag is their rank by (submitted_at, id); each
    # client's virtual time starts after its last tag, so nobody starts with banked credit.
    op.execute(
        "UPDATE jobs SET vtag = (SELECT r.rn FROM (SELECT id, row_number() OVER (ORDER BY submitted_at, id) AS rn"
        " FROM jobs WHERE state IN (0, 1, 2)) AS r WHERE r.id = jobs.id) WHERE state IN (0, 1, 2)"
    )
    op.execute(
        "UPDATE client_applications SET vtime = COALESCE((SELECT MAX(j.vtag) + 1 FROM jobs j"
        " WHERE j.client_id = client_applications.id AND j.state IN (0, 1, 2)), 0)"
    )
    op.drop_index("ix_jobs_queued_pair", table_name="jobs", postgresql_where=_QUEUED, sqlite_where=_QUEUED)
    op.create_index(
        "ix_jobs_queued_vtag", "jobs", ["application", "version", "vtag", "id"], unique=False,
        postgresql_where=_QUEUED, sqlite_where=_QUEUED,
    )
    op.create_index(
        "ix_jobs_queued_client_priority", "jobs", ["client_id", "application", "version", sa.text("priority DESC"), "id"],
        unique=False, postgresql_where=_QUEUED, sqlite_where=_QUEUED,
    )
    op.create_index("ix_jobs_queued_min_vtag", "jobs", ["vtag"], unique=False, postgresql_where=_QUEUED, sqlite_where=_QUEUED)


def downgrade() -> None:
    op.drop_index("ix_jobs_queued_min_vtag", table_name="jobs", postgresql_where=_QUEUED, sqlite_where=_QUEUED)
    op.drop_index("ix_jobs_queued_client_priority", table_name="jobs", postgresql_where=_QUEUED, sqlite_where=_QUEUED)
    op.drop_index("ix_jobs_queued_vtag", table_name="jobs", postgresql_where=_QUEUED, sqlite_where=_QUEUED)
    op.create_index(
        "ix_jobs_queued_pair", "jobs", ["application", "version", "submitted_at", "id"], unique=False,
        postgresql_where=_QUEUED, sqlite_where=_QUEUED,
    )
    # Plain DROP COLUMNs (SQLite 3.35+): a batch copy of `jobs` would lose its partial indexes.
    op.drop_column("jobs", "vtag")
    op.drop_column("jobs", "priority")
    op.drop_index("ix_client_applications_limited", table_name="client_applications")
    op.drop_index("ix_client_applications_vtime", table_name="client_applications")
    op.drop_column("client_applications", "max_in_flight")
    op.drop_column("client_applications", "max_queued")
    op.drop_column("client_applications", "vtime")
    op.drop_column("client_applications", "weight")
