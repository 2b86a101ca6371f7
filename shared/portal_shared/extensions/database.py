"""The database of a Nameko service: engine, migrations, a unit of work per worker.

``Database`` is a dependency provider: it creates the engine
(``portal_shared.db``) and applies the service's Alembic migrations
(``portal_shared.migrations``) in ``setup()``, has the outbox relay
(``portal_shared.extensions.relay``) run while the container runs, prunes old
inbox claims, and hands each worker a ``UnitOfWork`` whose session is closed
in ``worker_teardown``.
"""
from datetime import timedelta

import eventlet
import sqlalchemy as sa
from nameko.extensions import DependencyProvider
from sqlalchemy.orm import sessionmaker

from portal_shared.config import get_bool, get_float, get_str
from portal_shared.db import RetryingSession, UnitOfWork, create_db_engine, pool_settings
from portal_shared.extensions.relay import OutboxRelayExtension
from portal_shared.inbox import prune_inbox
from portal_shared.logs import configure_logging, get_logger
from portal_shared.migrations import upgrade_database

log = get_logger(__name__)


class Database(DependencyProvider):
    """SQLAlchemy dependency provider with migrations and the outbox relay.

    :param migrations: Alembic script location, e.g. ``"dossier:migrations"``.
    :param relay_events: run the outbox relay for this service's events.
    """

    def __init__(self, migrations, relay_events=True, url_key="DATABASE_URL"):
        self.migrations = migrations
        self.relay_events = relay_events
        self.url_key = url_key
        self.engine = None
        self.outbox_relay = OutboxRelayExtension() if relay_events else None
        self._units = {}

    @property
    def relay(self):
        """The service's ``OutboxRelay`` once set up; None without one."""
        return self.outbox_relay.relay if self.outbox_relay is not None else None

    def setup(self):
        configure_logging()  # before migrations log anything; idempotent
        config = self.container.config
        url = get_str(config, self.url_key)
        if not url:
            raise RuntimeError(f"{self.url_key} is not configured")
        self.engine = create_db_engine(url, **pool_settings(config))
        if get_bool(config, "DATABASE_MIGRATE_ON_START", True):
            upgrade_database(self.engine, self.migrations)
        self.sessionmaker = sessionmaker(bind=self.engine, expire_on_commit=False, class_=RetryingSession)
        if self.outbox_relay is not None:
            self.outbox_relay.open(self.engine)

    def start(self):
        self.container.spawn_managed_thread(self._prune_inbox_forever, identifier="inbox_retention")

    def _prune_inbox_forever(self):
        """Consumer inbox claims older than INBOX_RETENTION_HOURS (default 30 days) go, every 10 minutes."""
        retention = timedelta(hours=get_float(self.container.config, "INBOX_RETENTION_HOURS", 720.0))
        while True:
            try:
                removed = prune_inbox(self.engine, retention)
                if removed:
                    log.info("inbox_pruned", rows=removed, retention_hours=retention.total_seconds() / 3600)
            except Exception as exc:  # the database away: try again next time
                log.warning("inbox_prune_failed", error=str(exc))
            eventlet.sleep(600)

    def stop(self):
        if self.outbox_relay is not None:  # its last flush must not meet a disposed engine
            self.outbox_relay.stop()
        if self.engine is not None:
            self.engine.dispose()

    def kill(self):
        self.stop()

    def get_dependency(self, worker_ctx):
        unit_of_work = UnitOfWork(self.sessionmaker, self.relay)
        self._units[worker_ctx] = unit_of_work
        return unit_of_work

    def worker_teardown(self, worker_ctx):
        unit_of_work = self._units.pop(worker_ctx, None)
        if unit_of_work is not None:
            unit_of_work.close()

    def ping(self):
        """True when the database answers a trivial query."""
        with self.engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
        return True
