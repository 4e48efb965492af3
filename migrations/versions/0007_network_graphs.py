"""Networks as graphs: experiment.network holds JSON, a preset's name ("mlp") or a network graph's object

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 18:00:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0007'
down_revision: Union[str, Sequence[str], None] = '0006'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def _sqlite() -> bool:
    return op.get_bind().dialect.name == 'sqlite'


def upgrade() -> None:
    if _sqlite():
        # Not through batch mode: it rebuilds the table, and dropping the old one would cascade-delete every
        # epoch row. A new column, filled, then swapped in by name (SQLite 3.35+ drops a plain column in place).
        op.execute("ALTER TABLE experiment ADD COLUMN network_json JSON NOT NULL DEFAULT '""'")
        op.execute("UPDATE experiment SET network_json = json_quote(network)")
        op.execute("ALTER TABLE experiment DROP COLUMN network")
        op.execute("ALTER TABLE experiment RENAME COLUMN network_json TO network")
    else:
        op.execute("ALTER TABLE experiment ALTER COLUMN network TYPE JSON USING to_json(network)")


def downgrade() -> None:
    bind = op.get_bind()
    graphs = bind.execute(sa.text(
        "SELECT count(*) FROM experiment WHERE json_type(network) != 'text'" if _sqlite()
        else "SELECT count(*) FROM experiment WHERE json_typeof(network) != 'string'"
    )).scalar()
    if graphs:
        raise RuntimeError(f"{graphs} experiments have a network graph, which revision 0006 cannot hold")
    if _sqlite():
        op.execute("ALTER TABLE experiment ADD COLUMN network_name VARCHAR(40) NOT NULL DEFAULT ''")
        op.execute("UPDATE experiment SET network_name = json_extract(network, '$')")
        op.execute("ALTER TABLE experiment DROP COLUMN network")
        op.execute("ALTER TABLE experiment RENAME COLUMN network_name TO network")
    else:
        op.execute("ALTER TABLE experiment ALTER COLUMN network TYPE VARCHAR(40) USING network #>> '{}'")
