"""Training options: early stopping, learning-rate schedules, weight decay, clipping, label smoothing, class weights

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 21:30:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0011'
down_revision: Union[str, Sequence[str], None] = '0010'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

# Every column nullable, with no default: an experiment from before trained without these options, which null says.
COLUMNS = (
    ('early_stopping_monitor', sa.String(length=40)),
    ('early_stopping_patience', sa.Integer()),
    ('early_stopping_min_delta', sa.Float()),
    ('lr_schedule', sa.JSON()),
    ('weight_decay', sa.Float()),
    ('clipnorm', sa.Float()),
    ('clipvalue', sa.Float()),
    ('label_smoothing', sa.Float()),
    ('class_weight', sa.JSON()),
    ('stopped_early_at', sa.Integer()),
)


def upgrade() -> None:
    # Plain ALTER TABLE ... ADD COLUMN on both databases: nullable columns need no table rebuild on SQLite.
    for name, kind in COLUMNS:
        op.add_column('experiment', sa.Column(name, kind, nullable=True))


def downgrade() -> None:
    # Plain DROP COLUMN, not a batch rebuild: on SQLite a rebuild of experiment would cascade-delete its epochs
    # (see 0007); SQLite drops a column in place since 3.35, and none of these is in an index or constraint.
    for name, _kind in reversed(COLUMNS):
        op.drop_column('experiment', name)
