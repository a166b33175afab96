"""What every table of the schema shares: one MetaData with deterministic constraint
names, the column types that differ between PostgreSQL and SQLite, and check constraints
over an enum's members."""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

# Deterministic constraint names keep migrations and autogenerate comparisons stable.
metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
# SQLite only autoincrements INTEGER PRIMARY KEY; PostgreSQL gets 64-bit ids.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Timestamp = sa.DateTime(timezone=True)


def one_of(column: str, values: Iterable[str]) -> str:
    """The check constraint ``column IN (...)`` over ``values`` (an enum's members)."""
    return f"{column} IN ({', '.join(repr(str(v)) for v in values)})"
