"""The learning rate each epoch trained at (a schedule's, a plateau's, or the spec's constant one)

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03 07:40:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0013'
down_revision: Union[str, Sequence[str], None] = '0012'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    # Nullable: epochs trained before it was recorded say null, not a rate they may not have trained at.
    op.add_column('epoch_metric', sa.Column('learning_rate', sa.Float(), nullable=True))


def downgrade() -> None:
    # In place, as 0012: a batch rebuild of epoch_metric is not needed to drop a nullable column (SQLite 3.35+).
    op.drop_column('epoch_metric', 'learning_rate')
