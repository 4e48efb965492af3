"""Per-user network limits: overrides of EPOCHAL_MAX_NETWORK_PARAMS, _FLOPS and _ACTIVATION_BYTES

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03 07:00:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0012'
down_revision: Union[str, Sequence[str], None] = '0011'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

# Nullable, no default: every existing user keeps the service-wide limits, which null says.
COLUMNS = ('max_network_params', 'max_network_flops', 'max_network_activation_bytes')


def upgrade() -> None:
    # Plain ADD COLUMN on both databases: nullable columns need no table rebuild on SQLite.
    for name in COLUMNS:
        op.add_column('user', sa.Column(name, sa.BigInteger(), nullable=True))


def downgrade() -> None:
    # Plain DROP COLUMN, not a batch rebuild: on SQLite a rebuild drops and recreates `user`, which the foreign
    # keys of every experiment and key refuse while rows exist (see 0009); SQLite drops a column in place since 3.35.
    for name in reversed(COLUMNS):
        op.drop_column('user', name)
