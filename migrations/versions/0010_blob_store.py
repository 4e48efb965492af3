"""Blob store in the database: content-addressed blobs and their chunks

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 21:00:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0010'
down_revision: Union[str, Sequence[str], None] = '0009'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        'blob',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('sha256', sa.String(length=64), nullable=True),
        sa.Column('size', sa.BigInteger(), nullable=False),
        sa.Column('chunks', sa.Integer(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('touched_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('completed_at', sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_blob')),
        sa.UniqueConstraint('sha256', name=op.f('uq_blob_sha256')),
    )
    with op.batch_alter_table('blob', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_blob_touched_at'), ['touched_at'], unique=False)
    op.create_table(
        'blob_chunk',
        sa.Column('blob_id', sa.Integer(), nullable=False),
        sa.Column('seq', sa.Integer(), nullable=False),
        sa.Column('data', sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(['blob_id'], ['blob.id'], name=op.f('fk_blob_chunk_blob_id_blob'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('blob_id', 'seq', name=op.f('pk_blob_chunk')),
    )


def downgrade() -> None:
    # Whatever was stored goes with the tables: nothing before this revision refers to a blob.
    op.drop_table('blob_chunk')
    with op.batch_alter_table('blob', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_blob_touched_at'))
    op.drop_table('blob')
