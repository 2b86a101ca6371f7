"""Alembic environment of the notify service."""
from notify.orm import Base
from portal_shared.migrations import run_migrations

run_migrations(Base.metadata, "NOTIFY_DATABASE_URL", "sqlite:///var/notify.db")
