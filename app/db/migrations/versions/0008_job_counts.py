"""job counts per (client, state), kept by triggers on jobs (getContentConversionCounts at 1M jobs);
ix_jobs_finished_at partial (range deletes)

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30

PostgreSQL: statement-level triggers (with transition tables) append one delta row per (client,
state) a statement changes to `job_count_deltas`: no row is updated in place, so claims and finishes
of many processes never wait on a shared counter row, and a 100k range delete adds two rows, not
200k. Beat folds the deltas into `job_counts` (app.services.job_counts.fold). A read sums a client's
totals and its pending deltas.

SQLite (one writer at a time, so no contention to avoid): row triggers keep `job_counts` itself.

Backfilled from jobs; run it with the service stopped, as every migration.
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

PG_FUNCTIONS = (
    """
    CREATE FUNCTION jobs_count_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO job_count_deltas (client_id, state, n)
        SELECT client_id, state, count(*) FROM new_rows GROUP BY client_id, state;
        RETURN NULL;
    END $$
    """,
    """
    CREATE FUNCTION jobs_count_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO job_count_deltas (client_id, state, n)
        SELECT client_id, state, -count(*) FROM old_rows GROUP BY client_id, state;
        RETURN NULL;
    END $$
    """,
    # Most updates (extend, a fair-share tag swap) change no state: nothing is written for them.
    """
    CREATE FUNCTION jobs_count_updated() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO job_count_deltas (client_id, state, n)
        SELECT client_id, state, sum(n) FROM (
            SELECT client_id, state, -1 AS n FROM old_rows
            UNION ALL
            SELECT client_id, state, 1 AS n FROM new_rows
        ) AS d
        GROUP BY client_id, state
        HAVING sum(n) <> 0;
        RETURN NULL;
    END $$
    """,
)
PG_TRIGGERS = (
    "CREATE TRIGGER jobs_count_inserted AFTER INSERT ON jobs REFERENCING NEW TABLE AS new_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION jobs_count_inserted()",
    "CREATE TRIGGER jobs_count_deleted AFTER DELETE ON jobs REFERENCING OLD TABLE AS old_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION jobs_count_deleted()",
    "CREATE TRIGGER jobs_count_updated AFTER UPDATE ON jobs REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION jobs_count_updated()",
)
SQLITE_TRIGGERS = (
    """
    CREATE TRIGGER jobs_count_inserted AFTER INSERT ON jobs BEGIN
        INSERT INTO job_counts (client_id, state, n) VALUES (NEW.client_id, NEW.state, 1)
        ON CONFLICT (client_id, state) DO UPDATE SET n = n + 1;
    END
    """,
    """
    CREATE TRIGGER jobs_count_deleted AFTER DELETE ON jobs BEGIN
        UPDATE job_counts SET n = n - 1 WHERE client_id = OLD.client_id AND state = OLD.state;
    END
    """,
    """
    CREATE TRIGGER jobs_count_updated AFTER UPDATE OF state, client_id ON jobs
    WHEN OLD.state IS NOT NEW.state OR OLD.client_id IS NOT NEW.client_id BEGIN
        UPDATE job_counts SET n = n - 1 WHERE client_id = OLD.client_id AND state = OLD.state;
        INSERT INTO job_counts (client_id, state, n) VALUES (NEW.client_id, NEW.state, 1)
        ON CONFLICT (client_id, state) DO UPDATE SET n = n + 1;
    END
    """,
)


def upgrade() -> None:
    op.create_table(
        "job_counts",
        sa.Column("client_id", sa.Integer(), nullable=False),
        sa.Column("state", sa.SmallInteger(), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("client_id", "state"),
    )
    op.create_table(
        "job_count_deltas",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("client_id", sa.Integer(), nullable=False),
        sa.Column("state", sa.SmallInteger(), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_job_count_deltas_client_id", "job_count_deltas", ["client_id"])
    # A range delete's UPDATE adds an entry to every full index per row: ix_jobs_finished_at only
    # needs ended jobs (its queries compare finished_at, which implies NOT NULL).
    op.drop_index("ix_jobs_finished_at", table_name="jobs")
    op.create_index(
        "ix_jobs_finished_at", "jobs", ["finished_at"],
        postgresql_where=sa.text("finished_at IS NOT NULL"), sqlite_where=sa.text("finished_at IS NOT NULL"),
    )
    op.execute("INSERT INTO job_counts (client_id, state, n) SELECT client_id, state, count(*) FROM jobs GROUP BY client_id, state")
    if op.get_bind().dialect.name == "postgresql":
        for stmt in PG_FUNCTIONS + PG_TRIGGERS:
            op.execute(stmt)
    else:
        for stmt in SQLITE_TRIGGERS:
            op.execute(stmt)


def downgrade() -> None:
    for name in ("jobs_count_inserted", "jobs_count_deleted", "jobs_count_updated"):
        if op.get_bind().dialect.name == "postgresql":
            op.execute(f"DROP TRIGGER IF EXISTS {name} ON jobs")
            op.execute(f"DROP FUNCTION IF EXISTS {name}()")
        else:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
    op.drop_table("job_count_deltas")
    op.drop_table("job_counts")
    op.drop_index("ix_jobs_finished_at", table_name="jobs")
    op.create_index("ix_jobs_finished_at", "jobs", ["finished_at"])
