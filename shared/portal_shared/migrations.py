"""Alembic: bringing a database to head, and the body of the services' migration environments.

Each service's ``migrations/env.py`` calls ``run_migrations(metadata, env_var)``;
``upgrade_database(engine, "dossier:migrations")`` brings a database to head.
Migrations run at service start-up (``DATABASE_MIGRATE_ON_START``, default on)
or by hand: ``portal-migrate dossier`` (likewise ``payment``, ``notify``, ``portal_sync``).
"""
import sys

import sqlalchemy as sa
from alembic import command, context
from alembic.config import Config as AlembicConfig

from portal_shared.config import env_or
from portal_shared.db import create_db_engine

MIGRATION_LOCK_KEY = 7_300_001  # pg advisory lock: one migrating process at a time

SERVICES = {
    "dossier": ("dossier:migrations", "DOSSIER_DATABASE_URL", "sqlite:///var/dossier.db"),
    "payment": ("payment:migrations", "PAYMENT_DATABASE_URL", "sqlite:///var/payment.db"),
    "notify": ("notify:migrations", "NOTIFY_DATABASE_URL", "sqlite:///var/notify.db"),
    "portal_sync": ("portal_sync:migrations", "PORTAL_SYNC_DATABASE_URL", "sqlite:///var/portal_sync.db"),
}


def upgrade_database(engine, script_location):
    """Apply the Alembic history at ``script_location`` up to head.

    On PostgreSQL an advisory lock makes processes that start together take
    turns: the first migrates, the others find the schema at head.
    """
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", script_location)
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, "head")


def run_migrations(target_metadata, url_env_var, default_url):
    """Body of an Alembic ``env.py``: use the given connection, else the URL from the environment."""
    connection = context.config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_db_engine(env_or(url_env_var, default_url))
    with engine.begin() as connection:
        context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
        context.run_migrations()


def main(argv=None):
    """``portal-migrate SERVICE``: upgrade that service's database to head."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or argv[0] not in SERVICES:
        print(f"usage: portal-migrate {{{','.join(SERVICES)}}}", file=sys.stderr)
        return 2
    location, env_var, default_url = SERVICES[argv[0]]
    upgrade_database(create_db_engine(env_or(env_var, default_url)), location)
    print(f"{argv[0]}: database at head")
    return 0


if __name__ == "__main__":
    sys.exit(main())
