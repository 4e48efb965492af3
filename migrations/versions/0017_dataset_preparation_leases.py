"""Dataset preparations as leases: dataset_version.prepare_attempts, prepare_lease_expires_at, prepare_published_at

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-03 12:00:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0017'
down_revision: Union[str, Sequence[str], None] = '0016'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    # Plain ADD COLUMN on both databases: nullable columns, and one with a default, need no rebuild on SQLite. A
    # version processing already counts no attempt and holds no lease: past the grace, the reaper publishes it again.
    op.add_column(
        'dataset_version', sa.Column('prepare_attempts', sa.Integer(), nullable=False, server_default='0')
    )
    op.add_column('dataset_version', sa.Column('prepare_lease_expires_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('dataset_version', sa.Column('prepare_published_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    # Plain DROP COLUMN, as in 0012: SQLite drops a column in place since 3.35, and a rebuild would fight the
    # foreign keys of the rows that reference `user`.
    for name in ('prepare_published_at', 'prepare_lease_expires_at', 'prepare_attempts'):
        op.drop_column('dataset_version', name)
