"""Database access for Nameko services: engine, migrations and a per-worker session.

``Database`` is a dependency provider: it creates the engine and applies the
service's Alembic migrations in ``setup()``, runs the outbox relay while the
container runs, and hands each worker a ``UnitOfWork`` whose session is closed
in ``worker_teardown``.
"""
import os
from contextlib import contextmanager
from datetime import timedelta

import eventlet
import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig
from nameko.extensions import DependencyProvider
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

from portal_shared import outbox
from portal_shared.config import get_bool, get_float, get_str
from portal_shared.logs import configure_logging, get_logger
from portal_shared.sqltypes import UtcDateTime  # noqa: F401  (re-exported for the services)

log = get_logger(__name__)

MIGRATION_LOCK_KEY = 7_300_001  # pg advisory lock: one migrating process at a time
POOL_RECYCLE_SECONDS = 1800

try:  # the real poll(): eventlet's green select has none, and a zero timeout needs no hub
    from eventlet.patcher import original as _original

    _select = _original("select")
except ImportError:  # pragma: no cover - the services always run on eventlet
    import select as _select
_poll, _POLLIN = _select.poll, _select.POLLIN


def create_db_engine(url):
    """Create an engine for a SQLAlchemy URL, with sane settings per backend."""
    if url.startswith("sqlite"):
        memory = url in ("sqlite://", "sqlite:///:memory:") or "mode=memory" in url
        if not memory:
            path = sa.engine.make_url(url).database
            if path and os.path.dirname(path):
                os.makedirs(os.path.dirname(path), exist_ok=True)
        engine = sa.create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            poolclass=StaticPool if memory else None,
            hide_parameters=True,  # a failed statement's message never carries names, addresses, form data
        )

        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            if not memory:
                cursor.execute("PRAGMA journal_mode=WAL")
            cursor.close()

        return engine
    parsed = sa.engine.make_url(url)
    if parsed.drivername == "postgresql":
        # SQLAlchemy 2.1 picks psycopg 3 for a bare postgresql:// URL; psycopg2 is what
        # eventlet's monkey patching makes cooperative.
        parsed = parsed.set(drivername="postgresql+psycopg2")
    # No ping per checkout (a round trip before every transaction): a connection the server
    # has closed is found by a local poll of its socket at checkout, connections are
    # recycled before idle timeouts in between can bite, and a transaction whose first
    # statement meets a dead connection anyway is run again once (``RetryingSession``).
    engine = sa.create_engine(parsed, pool_size=10, max_overflow=20, pool_recycle=POOL_RECYCLE_SECONDS,
                             hide_parameters=True)
    sa.event.listen(engine, "checkout", _discard_if_closed_by_server)
    return engine


def _discard_if_closed_by_server(dbapi_connection, _record, _proxy):
    """Checkout hook: a pooled connection the server closed is replaced, without a round trip.

    An idle connection has nothing to read; after ``pg_terminate_backend``, a server
    restart or an idle timeout the server's last message and EOF are waiting in the
    socket. The pool retries the checkout with a new connection.
    """
    if dbapi_connection.closed:
        raise sa.exc.DisconnectionError("connection closed")
    poller = _poll()
    poller.register(dbapi_connection.fileno(), _POLLIN)
    if poller.poll(0):
        raise sa.exc.DisconnectionError("server closed the connection")


class RetryingSession(Session):
    """A session that runs a transaction again, once, when its first statement finds the
    connection dead (the server closed it after the checkout's check).

    Only the first statement of a transaction with nothing pending is retried: nothing of
    the transaction can have reached the server, so running it again is safe.
    """

    def execute(self, statement, *args, **kwargs):
        first = not self.in_transaction() and not (self.new or self.dirty or self.deleted)
        try:
            return super().execute(statement, *args, **kwargs)
        except sa.exc.DBAPIError as exc:
            if not (first and exc.connection_invalidated):
                raise
            log.warning("database_reconnected", error=type(exc.orig).__name__)
            self.rollback()
            return super().execute(statement, *args, **kwargs)


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


class UnitOfWork:
    """A worker's view of the database: one session, explicit transactions.

    ``transaction()`` commits when its block ends normally and rolls back on
    any exception; after a commit that recorded events it wakes the outbox
    relay so the events leave within milliseconds.
    """

    def __init__(self, sessionmaker_, relay):
        self._sessionmaker = sessionmaker_
        self._relay = relay
        self._session = None

    @property
    def session(self):
        if self._session is None:
            self._session = self._sessionmaker()
        return self._session

    @contextmanager
    def transaction(self):
        session = self.session
        try:
            yield session
            self.commit()
        except BaseException:
            session.rollback()
            raise

    def commit(self):
        """Commit the session; wake the relay when the transaction recorded events."""
        session = self.session
        session.commit()
        if session.info.pop(outbox.PENDING_FLAG, False) and self._relay is not None:
            self._relay.wake()

    @contextmanager
    def read(self):
        """A read-only block: its transaction ends when the block does, so no
        snapshot or lock outlives the read in a long-lived worker session."""
        try:
            yield self.session
        finally:
            self.session.rollback()

    def close(self):
        if self._session is not None:
            self._session.close()
            self._session = None


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
        self.relay = None
        self._units = {}

    def setup(self):
        configure_logging()  # before migrations log anything; idempotent
        config = self.container.config
        url = get_str(config, self.url_key)
        if not url:
            raise RuntimeError(f"{self.url_key} is not configured")
        self.engine = create_db_engine(url)
        if get_bool(config, "DATABASE_MIGRATE_ON_START", True):
            upgrade_database(self.engine, self.migrations)
        self.sessionmaker = sessionmaker(bind=self.engine, expire_on_commit=False, class_=RetryingSession)
        if self.relay_events:
            self.relay = outbox.OutboxRelay(
                self.engine,
                amqp_uri=config["AMQP_URI"],
                service_name=self.container.service_name,
                sweep_seconds=get_float(config, "OUTBOX_SWEEP_SECONDS", 1.0),
                retention_hours=get_float(config, "OUTBOX_RETENTION_HOURS", 168.0),
            )

    def start(self):
        if self.relay is not None:
            self.container.spawn_managed_thread(self.relay.run, identifier="outbox_relay")
        self.container.spawn_managed_thread(self._prune_inbox_forever, identifier="inbox_retention")

    def _prune_inbox_forever(self):
        """Consumer inbox claims older than INBOX_RETENTION_HOURS (default 30 days) go, every 10 minutes."""
        from portal_shared.inbox import prune_inbox

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
        if self.relay is not None:
            self.relay.stop()
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
