"""Model registry (models, versions, aliases, alias moves, dataset defaults) and what each attempt's worker ran

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 17:00:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0008'
down_revision: Union[str, Sequence[str], None] = '0007'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

ATTEMPT_COLUMNS = [
    ('device', 200),
    ('python_version', 40),
    ('tensorflow_version', 40),
    ('keras_version', 40),
    ('numpy_version', 40),
    ('service_version', 100),
]


def upgrade() -> None:
    op.create_table(
        'registered_model',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=100), nullable=False),
        sa.Column('description', sa.Text(), nullable=True),
        sa.Column('owner_id', sa.Integer(), nullable=False),
        sa.Column('visibility', sa.Enum('private', 'public', name='visibility', native_enum=False, length=10), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('changed_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['owner_id'], ['user.id'], name=op.f('fk_registered_model_owner_id_user')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_registered_model')),
        sa.UniqueConstraint('name', name=op.f('uq_registered_model_name')),
    )
    with op.batch_alter_table('registered_model', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_registered_model_owner_id'), ['owner_id'], unique=False)
    op.create_table(
        'model_version',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('model_id', sa.Integer(), nullable=False),
        sa.Column('number', sa.Integer(), nullable=False),
        sa.Column('experiment_id', sa.Integer(), nullable=False),
        sa.Column('checkpoint_sha256', sa.String(length=64), nullable=False),
        sa.Column('created_by', sa.Integer(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['created_by'], ['user.id'], name=op.f('fk_model_version_created_by_user')),
        sa.ForeignKeyConstraint(['experiment_id'], ['experiment.id'], name=op.f('fk_model_version_experiment_id_experiment')),
        sa.ForeignKeyConstraint(['model_id'], ['registered_model.id'], name=op.f('fk_model_version_model_id_registered_model'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_model_version')),
        sa.UniqueConstraint('model_id', 'number', name=op.f('uq_model_version_model_id_number')),
    )
    with op.batch_alter_table('model_version', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_model_version_experiment_id'), ['experiment_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_model_version_model_id'), ['model_id'], unique=False)
    op.create_table(
        'model_alias',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('model_id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=40), nullable=False),
        sa.Column('version', sa.Integer(), nullable=False),
        sa.Column('moved_by', sa.Integer(), nullable=False),
        sa.Column('moved_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['model_id'], ['registered_model.id'], name=op.f('fk_model_alias_model_id_registered_model'), ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['moved_by'], ['user.id'], name=op.f('fk_model_alias_moved_by_user')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_model_alias')),
        sa.UniqueConstraint('model_id', 'name', name=op.f('uq_model_alias_model_id_name')),
    )
    with op.batch_alter_table('model_alias', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_model_alias_model_id'), ['model_id'], unique=False)
    op.create_table(
        'alias_move',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('model_id', sa.Integer(), nullable=False),
        sa.Column('alias', sa.String(length=40), nullable=False),
        sa.Column('from_version', sa.Integer(), nullable=True),
        sa.Column('to_version', sa.Integer(), nullable=True),
        sa.Column('moved_by', sa.Integer(), nullable=False),
        sa.Column('moved_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['model_id'], ['registered_model.id'], name=op.f('fk_alias_move_model_id_registered_model'), ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['moved_by'], ['user.id'], name=op.f('fk_alias_move_moved_by_user')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_alias_move')),
    )
    with op.batch_alter_table('alias_move', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_alias_move_model_id'), ['model_id'], unique=False)
    op.create_table(
        'dataset_default',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('dataset', sa.String(length=40), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=True),
        sa.Column('model_id', sa.Integer(), nullable=False),
        sa.Column('alias', sa.String(length=40), nullable=True),
        sa.Column('version', sa.Integer(), nullable=True),
        sa.Column('set_by', sa.Integer(), nullable=False),
        sa.Column('set_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['model_id'], ['registered_model.id'], name=op.f('fk_dataset_default_model_id_registered_model'), ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['set_by'], ['user.id'], name=op.f('fk_dataset_default_set_by_user')),
        sa.ForeignKeyConstraint(['user_id'], ['user.id'], name=op.f('fk_dataset_default_user_id_user'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_dataset_default')),
    )
    with op.batch_alter_table('dataset_default', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_dataset_default_dataset'), ['dataset'], unique=False)
        batch_op.create_index(batch_op.f('ix_dataset_default_model_id'), ['model_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_dataset_default_user_id'), ['user_id'], unique=False)
    # Attempts from before this revision ran on versions nobody wrote down: they stay null ("not recorded").
    with op.batch_alter_table('attempt', schema=None) as batch_op:
        for name, length in ATTEMPT_COLUMNS:
            batch_op.add_column(sa.Column(name, sa.String(length=length), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('attempt', schema=None) as batch_op:
        for name, _length in reversed(ATTEMPT_COLUMNS):
            batch_op.drop_column(name)
    for table in ('dataset_default', 'alias_move', 'model_alias', 'model_version', 'registered_model'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            for index in {'dataset_default': ['dataset', 'model_id', 'user_id'], 'alias_move': ['model_id'], 'model_alias': ['model_id'], 'model_version': ['model_id', 'experiment_id'], 'registered_model': ['owner_id']}[table]:
                batch_op.drop_index(batch_op.f(f'ix_{table}_{index}'))
        op.drop_table(table)
