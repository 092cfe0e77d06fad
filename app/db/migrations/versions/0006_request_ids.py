"""client request ids: a retried contentUpload / contentConvert answers the first call's result

Revision ID: 0006
Revises: 0003
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "request_ids",
        sa.Column("client_id", sa.Integer(), nullable=False),
        sa.Column("operation", sa.String(length=40), nullable=False),
        sa.Column("request_id", sa.String(length=100), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("answer", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["client_id"], ["client_applications.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("client_id", "operation", "request_id"),
    )
    op.create_index("ix_request_ids_created_at", "request_ids", ["created_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_request_ids_created_at", table_name="request_ids")
    op.drop_table("request_ids")
