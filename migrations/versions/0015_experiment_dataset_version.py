"""The dataset version an experiment trained on; its dataset column may name an uploaded dataset

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03 11:40:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0015'
down_revision: Union[str, Sequence[str], None] = '0014'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    # The dataset column stays VARCHAR(40) (it was a non-native enum of the built-ins' names, with no constraint),
    # which holds any dataset name (at most 40 characters). Every experiment so far trained on a built-in, and the
    # built-ins are version 1 of their names (0014), so that is the version they trained on.
    op.add_column('experiment', sa.Column('dataset_version', sa.Integer(), nullable=True))
    op.execute("UPDATE experiment SET dataset_version = 1")


def downgrade() -> None:
    # Refused while an experiment names an uploaded dataset: 0014's schema has nothing that could train it again.
    builtins = "('mnist', 'fashion_mnist', 'cats_vs_dogs')"
    bind = op.get_bind()
    uploaded = bind.execute(sa.text(f"SELECT count(*) FROM experiment WHERE dataset NOT IN {builtins}")).scalar()
    if uploaded:
        raise RuntimeError(
            f"{uploaded} experiments trained on uploaded datasets; delete them before downgrading below 0015"
        )
    op.drop_column('experiment', 'dataset_version')
