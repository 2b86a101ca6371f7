"""Alembic environment of the payment service."""
from payment.orm import metadata
from portal_shared.migrations import run_migrations

run_migrations(metadata, "PAYMENT_DATABASE_URL", "sqlite:///var/payment.db")
