"""users, API keys, and an owner on every experiment and sweep

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 14:20:00

Work created before users existed belongs to the first admin: when the database already holds
experiments or sweeps, an admin user named "admin" is created here (without a key: `python -m epochal
serve` or `python -m epochal keys create admin` makes one).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OWNED = ("experiment", "sweep")


def _sqlite_foreign_keys(on: bool) -> None:
    # SQLite cannot add NOT NULL to a column in place: batch mode copies the table and drops the old one,
    # and with foreign keys on, that DROP cascades to every epoch row, evaluation and artifact. The pragma
    # only takes effect outside a transaction.
    if op.get_bind().dialect.name == "sqlite":
        with op.get_context().autocommit_block():
            op.execute(f"PRAGMA foreign_keys={'ON' if on else 'OFF'}")


def upgrade() -> None:
    op.create_table(
        "user",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("admin", sa.Boolean(), nullable=False),
        sa.Column("max_active_jobs", sa.Integer(), nullable=True),
        sa.Column("max_sweep_experiments", sa.Integer(), nullable=True),
        sa.Column("predictions_per_second", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_user")),
        sa.UniqueConstraint("name", name=op.f("uq_user_name")),
    )
    op.create_table(
        "api_key",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["user.id"], name=op.f("fk_api_key_user_id_user"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_key")),
    )
    with op.batch_alter_table("api_key") as batch_op:
        batch_op.create_index(batch_op.f("ix_api_key_prefix"), ["prefix"], unique=False)
        batch_op.create_index(batch_op.f("ix_api_key_user_id"), ["user_id"], unique=False)

    # Nullable first, filled, then NOT NULL: existing rows need an owner before the constraint holds.
    for table in OWNED:
        with op.batch_alter_table(table) as batch_op:
            batch_op.add_column(sa.Column("owner_id", sa.Integer(), nullable=True))
    _give_existing_work_to_the_first_admin()
    _sqlite_foreign_keys(on=False)
    for table in OWNED:
        with op.batch_alter_table(table) as batch_op:
            batch_op.alter_column("owner_id", existing_type=sa.Integer(), nullable=False)
            batch_op.create_foreign_key(batch_op.f(f"fk_{table}_owner_id_user"), "user", ["owner_id"], ["id"])
            batch_op.create_index(batch_op.f(f"ix_{table}_owner_id"), ["owner_id"], unique=False)
    _sqlite_foreign_keys(on=True)


def _give_existing_work_to_the_first_admin() -> None:
    bind = op.get_bind()
    user = sa.table(
        "user",
        sa.column("id", sa.Integer),
        sa.column("name", sa.String),
        sa.column("admin", sa.Boolean),
        sa.column("created_at", sa.DateTime(timezone=True)),
    )
    owned = {name: sa.table(name, sa.column("id", sa.Integer), sa.column("owner_id", sa.Integer)) for name in OWNED}
    if not any(bind.execute(sa.select(t.c.id).limit(1)).first() for t in owned.values()):
        return
    admin_id = bind.scalar(sa.select(user.c.id).where(user.c.admin.is_(True)).order_by(user.c.id).limit(1))
    if admin_id is None:
        bind.execute(sa.insert(user).values(name="admin", admin=True, created_at=sa.func.now()))
        admin_id = bind.scalar(sa.select(user.c.id).where(user.c.name == "admin"))
    for table in owned.values():
        bind.execute(sa.update(table).where(table.c.owner_id.is_(None)).values(owner_id=admin_id))


def downgrade() -> None:
    _sqlite_foreign_keys(on=False)
    for table in reversed(OWNED):
        with op.batch_alter_table(table) as batch_op:
            batch_op.drop_index(batch_op.f(f"ix_{table}_owner_id"))
            batch_op.drop_constraint(batch_op.f(f"fk_{table}_owner_id_user"), type_="foreignkey")
            batch_op.drop_column("owner_id")
    _sqlite_foreign_keys(on=True)
    with op.batch_alter_table("api_key") as batch_op:
        batch_op.drop_index(batch_op.f("ix_api_key_user_id"))
        batch_op.drop_index(batch_op.f("ix_api_key_prefix"))
    op.drop_table("api_key")
    op.drop_table("user")
