"""Honest comparisons: which validation selected the best epoch, repeats of a configuration, split sizes

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27 15:00:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0005'
down_revision: Union[str, Sequence[str], None] = '0004'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    # Added with a server default rather than made NOT NULL afterwards: on SQLite the latter rebuilds the
    # table, and dropping the old one would cascade-delete every epoch row. 'test' is what a row without
    # the column meant, unless it held out a validation_split (the update below).
    with op.batch_alter_table('experiment', schema=None) as batch_op:
        batch_op.add_column(sa.Column('validation', sa.Enum('held_out', 'test', name='validation', native_enum=False,
                                                            create_constraint=False, length=40),
                                      nullable=False, server_default='test'))
        batch_op.add_column(sa.Column('repeat', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('base_seed', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('train_count', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('validation_count', sa.Integer(), nullable=True))
    op.execute("UPDATE experiment SET validation = 'held_out' WHERE validation_split IS NOT NULL")


def downgrade() -> None:
    with op.batch_alter_table('experiment', schema=None) as batch_op:
        batch_op.drop_column('validation_count')
        batch_op.drop_column('train_count')
        batch_op.drop_column('base_seed')
        batch_op.drop_column('repeat')
        batch_op.drop_column('validation')
