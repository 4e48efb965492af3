"""attempts, leases and resume state

Fenced attempts (experiment.attempt is the token every write checks), leases renewed by a heartbeat,
republishing of unclaimed jobs, and the latest epoch's resume state.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 14:40:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0002'
down_revision: Union[str, Sequence[str], None] = '0001'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('experiment', schema=None) as batch_op:
        batch_op.add_column(sa.Column('deterministic', sa.Boolean(), nullable=False, server_default=sa.false()))
        # Jobs that were running or done before attempts existed ran once: they count as attempt 1.
        batch_op.add_column(sa.Column('attempt', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('lost_attempts', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('lease_expires_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('next_publish_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('publish_count', sa.Integer(), nullable=False, server_default='0'))
        batch_op.create_index(batch_op.f('ix_experiment_lease_expires_at'), ['lease_expires_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_experiment_next_publish_at'), ['next_publish_at'], unique=False)
    op.execute("UPDATE experiment SET attempt = 1 WHERE status <> 'queued'")
    # A job running at upgrade time has no heartbeat: an expired lease hands it to the reaper at once.
    op.execute("UPDATE experiment SET lease_expires_at = CURRENT_TIMESTAMP WHERE status = 'running'")
    op.execute("UPDATE experiment SET next_publish_at = CURRENT_TIMESTAMP WHERE status = 'queued'")

    with op.batch_alter_table('epoch_metric', schema=None) as batch_op:
        batch_op.add_column(sa.Column('attempt', sa.Integer(), nullable=False, server_default='1'))

    op.create_table('attempt',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('experiment_id', sa.Integer(), nullable=False),
    sa.Column('number', sa.Integer(), nullable=False),
    sa.Column('worker', sa.String(length=200), nullable=False),
    sa.Column('pid', sa.Integer(), nullable=True),
    sa.Column('resumed_from_epoch', sa.Integer(), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('outcome', sa.String(length=20), nullable=True),
    sa.Column('cause', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['experiment_id'], ['experiment.id'], name=op.f('fk_attempt_experiment_id_experiment'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_attempt')),
    sa.UniqueConstraint('experiment_id', 'number', name=op.f('uq_attempt_experiment_id_number'))
    )
    with op.batch_alter_table('attempt', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_attempt_experiment_id'), ['experiment_id'], unique=False)

    op.create_table('resume_state',
    sa.Column('experiment_id', sa.Integer(), nullable=False),
    sa.Column('epoch', sa.Integer(), nullable=False),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('state', sa.LargeBinary(), nullable=False),
    sa.Column('state_sha256', sa.String(length=64), nullable=False),
    sa.Column('best_epoch', sa.Integer(), nullable=True),
    sa.Column('best_val_accuracy', sa.Float(), nullable=True),
    sa.Column('best_checkpoint', sa.LargeBinary(), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['experiment_id'], ['experiment.id'], name=op.f('fk_resume_state_experiment_id_experiment'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('experiment_id', name=op.f('pk_resume_state'))
    )


def downgrade() -> None:
    op.drop_table('resume_state')
    with op.batch_alter_table('attempt', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_attempt_experiment_id'))
    op.drop_table('attempt')
    with op.batch_alter_table('epoch_metric', schema=None) as batch_op:
        batch_op.drop_column('attempt')
    with op.batch_alter_table('experiment', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_experiment_next_publish_at'))
        batch_op.drop_index(batch_op.f('ix_experiment_lease_expires_at'))
        batch_op.drop_column('publish_count')
        batch_op.drop_column('next_publish_at')
        batch_op.drop_column('lease_expires_at')
        batch_op.drop_column('lost_attempts')
        batch_op.drop_column('attempt')
        batch_op.drop_column('deterministic')
