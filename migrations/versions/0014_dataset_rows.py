"""Datasets as rows: dataset_version, with the three built-ins as public version-1 rows

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03 07:00:00

"""
from datetime import datetime, timezone
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0014'
down_revision: Union[str, Sequence[str], None] = '0013'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

# Copied from training/spec.py DATASETS as it was when this migration was written: a migration must not import
# app code that may change. No data file is read, so their content hashes stay null.
BUILTINS = (
    ('mnist', [str(d) for d in range(10)], [28, 28]),
    (
        'fashion_mnist',
        ['T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot'],
        [28, 28],
    ),
    ('cats_vs_dogs', ['cat', 'dog'], [150, 150, 3]),
)


def upgrade() -> None:
    table = op.create_table(
        'dataset_version',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=64), nullable=False),
        sa.Column('version', sa.Integer(), nullable=False),
        sa.Column('owner_id', sa.Integer(), nullable=True),
        sa.Column('visibility', sa.Enum('private', 'public', name='visibility', native_enum=False, length=10),
                  nullable=False),
        sa.Column('status', sa.Enum('processing', 'ready', 'failed', 'duplicate', name='datasetstatus',
                                    native_enum=False, length=12), nullable=False),
        sa.Column('errors', sa.JSON(), nullable=False),
        sa.Column('duplicate_of', sa.Integer(), nullable=True),
        sa.Column('content_sha256', sa.String(length=64), nullable=True),
        sa.Column('blob_sha256', sa.String(length=64), nullable=True),
        sa.Column('upload_sha256', sa.String(length=64), nullable=True),
        sa.Column('upload_bytes', sa.BigInteger(), nullable=True),
        sa.Column('options', sa.JSON(), nullable=False),
        sa.Column('class_names', sa.JSON(none_as_null=True), nullable=True),
        sa.Column('counts', sa.JSON(none_as_null=True), nullable=True),
        sa.Column('input_shape', sa.JSON(none_as_null=True), nullable=True),
        sa.Column('fit', sa.String(length=10), nullable=True),
        sa.Column('color_mode', sa.String(length=10), nullable=True),
        sa.Column('held_out', sa.Boolean(), nullable=True),
        sa.Column('test_fraction', sa.Float(), nullable=True),
        sa.Column('seed', sa.Integer(), nullable=True),
        sa.Column('size_bytes', sa.BigInteger(), nullable=True),
        sa.Column('images', sa.Integer(), nullable=True),
        sa.Column('source_format', sa.String(length=20), nullable=True),
        sa.Column('created_by', sa.Integer(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('deleted_at', sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['owner_id'], ['user.id'], name=op.f('fk_dataset_version_owner_id_user')),
        sa.ForeignKeyConstraint(['created_by'], ['user.id'], name=op.f('fk_dataset_version_created_by_user')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_dataset_version')),
        sa.UniqueConstraint('name', 'version', name=op.f('uq_dataset_version_name_version')),
    )
    with op.batch_alter_table('dataset_version', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_dataset_version_name'), ['name'], unique=False)
        batch_op.create_index(batch_op.f('ix_dataset_version_owner_id'), ['owner_id'], unique=False)
    now = datetime.now(timezone.utc)
    op.bulk_insert(
        table,
        [
            {
                'name': name, 'version': 1, 'owner_id': None, 'visibility': 'public', 'status': 'ready',
                'errors': [], 'options': {}, 'class_names': classes, 'input_shape': shape,
                'color_mode': 'grayscale' if len(shape) == 2 else 'rgb', 'held_out': False,
                'created_by': None, 'created_at': now, 'finished_at': now,
            }
            for name, classes, shape in BUILTINS
        ],
    )


def downgrade() -> None:
    # The uploaded datasets' rows go with the table; their blobs stay in the blob store until a sweep frees them.
    with op.batch_alter_table('dataset_version', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_dataset_version_owner_id'))
        batch_op.drop_index(batch_op.f('ix_dataset_version_name'))
    op.drop_table('dataset_version')
