"""Private datasets shared with named users: dataset_share

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-03 11:40:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0016'
down_revision: Union[str, Sequence[str], None] = '0015'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        'dataset_share',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=64), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('shared_by', sa.Integer(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['user_id'], ['user.id'], name=op.f('fk_dataset_share_user_id_user'),
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['shared_by'], ['user.id'], name=op.f('fk_dataset_share_shared_by_user'),
                                ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_dataset_share')),
        sa.UniqueConstraint('name', 'user_id', name=op.f('uq_dataset_share_name_user_id')),
    )
    with op.batch_alter_table('dataset_share', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_dataset_share_name'), ['name'], unique=False)
        batch_op.create_index(batch_op.f('ix_dataset_share_user_id'), ['user_id'], unique=False)


def downgrade() -> None:
    # The shares go: every shared dataset is private to its owner again.
    with op.batch_alter_table('dataset_share', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_dataset_share_user_id'))
        batch_op.drop_index(batch_op.f('ix_dataset_share_name'))
    op.drop_table('dataset_share')
