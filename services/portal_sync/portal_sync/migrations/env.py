"""Alembic environment of the portal_sync service."""
from portal_shared.migrations import run_migrations
from portal_sync.orm import Base

run_migrations(Base.metadata, "PORTAL_SYNC_DATABASE_URL", "sqlite:///var/portal_sync.db")
