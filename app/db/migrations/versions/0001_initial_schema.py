"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table('blobs',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('callbacks',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('job_id', sa.BigInteger(), nullable=False),
    sa.Column('url', sa.Text(), nullable=False),
    sa.Column('job_status', sa.SmallInteger(), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('done_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('callbacks', schema=None) as batch_op:
        batch_op.create_index('ix_callbacks_due', ['next_attempt_at'], unique=False, postgresql_where=sa.text('done_at IS NULL'), sqlite_where=sa.text('done_at IS NULL'))
        batch_op.create_index(batch_op.f('ix_callbacks_job_id'), ['job_id'], unique=False)

    op.create_table('client_applications',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('secret_hash', sa.String(length=300), nullable=False),
    sa.Column('disabled', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name')
    )
    op.create_table('factories',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('secret_hash', sa.String(length=300), nullable=False),
    sa.Column('disabled', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_poll_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name')
    )
    op.create_table('blob_chunks',
    sa.Column('blob_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('data', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['blob_id'], ['blobs.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('blob_id', 'seq')
    )
    op.create_table('contents',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('identifier', sa.String(length=36), nullable=False),
    sa.Column('client_id', sa.Integer(), nullable=False),
    sa.Column('blob_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('filename', sa.String(length=500), nullable=False),
    sa.Column('doctype', sa.String(length=10), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['blob_id'], ['blobs.id'], ),
    sa.ForeignKeyConstraint(['client_id'], ['client_applications.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('identifier')
    )
    with op.batch_alter_table('contents', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_contents_blob_id'), ['blob_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_contents_client_id'), ['client_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_contents_created_at'), ['created_at'], unique=False)

    op.create_table('factory_workers',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('factory_id', sa.Integer(), nullable=False),
    sa.Column('application', sa.String(length=200), nullable=False),
    sa.Column('version', sa.String(length=100), nullable=False),
    sa.Column('doctypes', sa.String(length=100), nullable=False),
    sa.Column('formats', sa.String(length=100), nullable=False),
    sa.ForeignKeyConstraint(['factory_id'], ['factories.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('factory_workers', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_factory_workers_factory_id'), ['factory_id'], unique=False)

    op.create_table('range_deletes',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('client_id', sa.Integer(), nullable=False),
    sa.Column('delete_from', sa.DateTime(timezone=True), nullable=False),
    sa.Column('delete_to', sa.DateTime(timezone=True), nullable=False),
    sa.Column('requested_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('deleted_count', sa.Integer(), nullable=False),
    sa.Column('skipped_count', sa.Integer(), nullable=False),
    sa.Column('purged_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['client_id'], ['client_applications.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('range_deletes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_range_deletes_client_id'), ['client_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_range_deletes_purged_at'), ['purged_at'], unique=False)

    op.create_table('jobs',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('guid', sa.String(length=36), nullable=False),
    sa.Column('client_id', sa.Integer(), nullable=False),
    sa.Column('content_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('application', sa.String(length=200), nullable=False),
    sa.Column('version', sa.String(length=100), nullable=False),
    sa.Column('doctype', sa.String(length=10), nullable=False),
    sa.Column('format', sa.String(length=10), nullable=False),
    sa.Column('page_start', sa.Integer(), nullable=False),
    sa.Column('page_end', sa.Integer(), nullable=False),
    sa.Column('state', sa.SmallInteger(), nullable=False),
    sa.Column('submitted_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('max_attempts', sa.Integer(), nullable=False),
    sa.Column('lease_token', sa.String(length=64), nullable=True),
    sa.Column('lease_owner', sa.String(length=200), nullable=True),
    sa.Column('leased_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('lease_expires', sa.DateTime(timezone=True), nullable=True),
    sa.Column('failure_reason', sa.Text(), nullable=True),
    sa.Column('success_url', sa.Text(), nullable=True),
    sa.Column('failure_url', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['client_id'], ['client_applications.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['content_id'], ['contents.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('guid')
    )
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.create_index('ix_jobs_client_state_id', ['client_id', 'state', 'id'], unique=False)
        batch_op.create_index('ix_jobs_client_submitted', ['client_id', 'submitted_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_jobs_content_id'), ['content_id'], unique=False)
        batch_op.create_index('ix_jobs_lease_expires', ['lease_expires'], unique=False, postgresql_where=sa.text('state IN (1, 2)'), sqlite_where=sa.text('state IN (1, 2)'))
        batch_op.create_index('ix_jobs_queued_pair', ['application', 'version', 'submitted_at', 'id'], unique=False, postgresql_where=sa.text('state = 0'), sqlite_where=sa.text('state = 0'))
        batch_op.create_index('ix_jobs_state_updated', ['state', 'updated_at'], unique=False)

    op.create_table('results',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('guid', sa.String(length=36), nullable=False),
    sa.Column('job_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('blob_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('format', sa.String(length=10), nullable=False),
    sa.Column('filename', sa.String(length=500), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['blob_id'], ['blobs.id'], ),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('guid'),
    sa.UniqueConstraint('job_id')
    )
    with op.batch_alter_table('results', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_results_blob_id'), ['blob_id'], unique=False)




def downgrade() -> None:

    with op.batch_alter_table('results', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_results_blob_id'))

    op.drop_table('results')
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_index('ix_jobs_state_updated')
        batch_op.drop_index('ix_jobs_queued_pair', postgresql_where=sa.text('state = 0'), sqlite_where=sa.text('state = 0'))
        batch_op.drop_index('ix_jobs_lease_expires', postgresql_where=sa.text('state IN (1, 2)'), sqlite_where=sa.text('state IN (1, 2)'))
        batch_op.drop_index(batch_op.f('ix_jobs_content_id'))
        batch_op.drop_index('ix_jobs_client_submitted')
        batch_op.drop_index('ix_jobs_client_state_id')

    op.drop_table('jobs')
    with op.batch_alter_table('range_deletes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_range_deletes_purged_at'))
        batch_op.drop_index(batch_op.f('ix_range_deletes_client_id'))

    op.drop_table('range_deletes')
    with op.batch_alter_table('factory_workers', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_factory_workers_factory_id'))

    op.drop_table('factory_workers')
    with op.batch_alter_table('contents', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_contents_created_at'))
        batch_op.drop_index(batch_op.f('ix_contents_client_id'))
        batch_op.drop_index(batch_op.f('ix_contents_blob_id'))

    op.drop_table('contents')
    op.drop_table('blob_chunks')
    op.drop_table('factories')
    op.drop_table('client_applications')
    with op.batch_alter_table('callbacks', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_callbacks_job_id'))
        batch_op.drop_index('ix_callbacks_due', postgresql_where=sa.text('done_at IS NULL'), sqlite_where=sa.text('done_at IS NULL'))

    op.drop_table('callbacks')
    op.drop_table('blobs')

