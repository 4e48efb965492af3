"""Fair-share dispatch: when a queued job was released to the broker, when it was queued, priorities, running caps

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 17:20:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0009'
down_revision: Union[str, Sequence[str], None] = '0008'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    # Server defaults, not NOT NULL afterwards: on SQLite that rebuilds the table (see 0005).
    with op.batch_alter_table('experiment', schema=None) as batch_op:
        batch_op.add_column(sa.Column('dispatched_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('queued_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('priority', sa.Integer(), nullable=False, server_default='0'))
        batch_op.create_index(batch_op.f('ix_experiment_dispatched_at'), ['dispatched_at'], unique=False)
    with op.batch_alter_table('user', schema=None) as batch_op:
        batch_op.add_column(sa.Column('max_running_jobs', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('priority', sa.Integer(), nullable=True))
    op.execute("UPDATE experiment SET queued_at = created_at")
    # Jobs queued before this revision were published when they were submitted: they are on the broker already,
    # so they count as released (the reaper publishes them again if nobody claims them), never twice.
    op.execute("UPDATE experiment SET dispatched_at = CURRENT_TIMESTAMP WHERE status = 'queued'")


def downgrade() -> None:
    # Plain ALTER TABLE ... DROP COLUMN, not a batch rebuild: on SQLite a rebuild drops and recreates `user`, which
    # the foreign keys of every experiment and key refuse while rows exist (SQLite has dropped columns itself since
    # 3.35; none of these columns is in a constraint).
    op.drop_index(op.f('ix_experiment_dispatched_at'), table_name='experiment')
    for column in ('priority', 'queued_at', 'dispatched_at'):
        op.drop_column('experiment', column)
    for column in ('priority', 'max_running_jobs'):
        op.drop_column('user', column)
