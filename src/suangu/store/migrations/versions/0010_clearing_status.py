"""Clearing statuses that tell apart how a clearing ended: ``time_limit`` (stopped at the
time limit with the best clearing found, within a certified gap) and ``heuristic`` (no bound,
e.g. the pay-as-bid baseline), beside ``optimal``, ``feasible``, ``empty`` and ``failed``.

Revision ID: 0010
Revises: 0007
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OLD = ("optimal", "feasible", "empty", "failed")
_NEW = ("optimal", "feasible", "time_limit", "heuristic", "empty", "failed")


def _one_of(column: str, values: Sequence[str]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _recheck(table: str, column: str, old: Sequence[str], new: Sequence[str]) -> None:
    """Replace the ``CHECK (column IN (old))`` of ``table`` by ``CHECK (column IN (new))``.

    SQLite cannot alter a constraint, and copying the table (Alembic's batch mode) fails while
    other rows refer to it with foreign keys on; so the table's SQL in the schema is edited
    in place, SQLite's documented procedure for changes that leave stored rows valid (every
    value stored is in ``old``, so it is in ``new`` when widening; narrowing is refused while
    a row uses a value left out)."""
    name = f"ck_{table}_{column}"
    bind = op.get_bind()
    gone = sorted(set(old) - set(new))
    if gone:
        used = bind.execute(
            sa.text(f"SELECT count(*) FROM {table} WHERE {column} IN :gone").bindparams(
                sa.bindparam("gone", expanding=True)
            ),
            {"gone": gone},
        ).scalar_one()
        if used:
            raise RuntimeError(f"{used} rows of {table} use {column} values {gone}")
    if bind.dialect.name != "sqlite":
        op.drop_constraint(op.f(name), table, type_="check")
        op.create_check_constraint(op.f(name), table, _one_of(column, new))
        return
    sql = bind.execute(
        sa.text("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = :t"), {"t": table}
    ).scalar_one()
    before = _one_of(column, old)
    if sql.count(before) != 1:
        raise RuntimeError(f"the CHECK {name} of {table} is not {before}")
    version = bind.exec_driver_sql("PRAGMA schema_version").scalar_one()
    bind.exec_driver_sql("PRAGMA writable_schema = ON")
    bind.execute(
        sa.text("UPDATE sqlite_master SET sql = :sql WHERE type = 'table' AND name = :t"),
        {"sql": sql.replace(before, _one_of(column, new)), "t": table},
    )
    bind.exec_driver_sql(f"PRAGMA schema_version = {int(version) + 1}")
    bind.exec_driver_sql("PRAGMA writable_schema = OFF")


def upgrade() -> None:
    _recheck("clearings", "status", _OLD, _NEW)


def downgrade() -> None:
    _recheck("clearings", "status", _NEW, _OLD)
