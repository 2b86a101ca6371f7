"""Column types shared by the services, and which of the two databases a statement runs on."""
from datetime import timezone

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite


def on_postgresql(bind):
    """True on PostgreSQL (production), False on SQLite (``make run``'s default); ``bind`` is a
    Session, a Connection or an Engine."""
    bind = bind.get_bind() if hasattr(bind, "get_bind") else bind
    return bind.dialect.name == "postgresql"


def dialect_insert(bind, table):
    """The INSERT of ``bind``'s database, with its ``on_conflict_*`` clauses."""
    return insert_for(on_postgresql(bind), table)


def insert_for(is_postgresql, table):
    """``dialect_insert`` for a statement built once per kind of database, before any bind is at hand."""
    return (postgresql.insert if is_postgresql else sqlite.insert)(table)


class UtcDateTime(sa.types.TypeDecorator):
    """Timezone-aware datetimes stored as UTC on every backend (SQLite has no zones)."""

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UtcDateTime column")
        value = value.astimezone(timezone.utc)
        return value if dialect.name == "postgresql" else value.replace(tzinfo=None)

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)

    def load_dialect_impl(self, dialect):
        return dialect.type_descriptor(sa.DateTime(timezone=True))
