"""Alembic environment of the dossier service."""
from dossier.orm import Base
from portal_shared.migrations import run_migrations

run_migrations(Base.metadata, "DOSSIER_DATABASE_URL", "sqlite:///var/dossier.db")
