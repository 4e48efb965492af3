"""Role leases: the reaper (and later other roles) held by one process at a time, and a record of its passes

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 22:00:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0006'
down_revision: Union[str, Sequence[str], None] = '0005'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        'role_lease',
        sa.Column('role', sa.String(length=40), nullable=False),
        sa.Column('holder', sa.String(length=200), nullable=False),
        sa.Column('acquired_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('last_pass_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('last_pass_by', sa.String(length=200), nullable=True),
        sa.Column('passes', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('role', name=op.f('pk_role_lease')),
    )
    op.create_table(
        'role_pass',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('role', sa.String(length=40), nullable=False),
        sa.Column('holder', sa.String(length=200), nullable=False),
        sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('finished_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('summary', sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_role_pass')),
    )
    with op.batch_alter_table('role_pass', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_role_pass_role'), ['role'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('role_pass', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_role_pass_role'))
    op.drop_table('role_pass')
    op.drop_table('role_lease')
