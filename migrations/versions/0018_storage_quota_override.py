"""Per-user storage quota: an override of EPOCHAL_MAX_STORAGE_BYTES, user.max_storage_bytes

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-03 12:00:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0018'
down_revision: Union[str, Sequence[str], None] = '0017'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    # Nullable, no default: every existing user keeps the service-wide quota, which null says. 64-bit: bytes run to
    # billions. Plain ADD COLUMN on both databases, as in 0012.
    op.add_column('user', sa.Column('max_storage_bytes', sa.BigInteger(), nullable=True))


def downgrade() -> None:
    # Plain DROP COLUMN, as in 0012: a batch rebuild of `user` is refused by the foreign keys that reference it.
    op.drop_column('user', 'max_storage_bytes')
