"""Database access without a framework: the engine factory, a retrying session, the unit of work.

Services get these through ``portal_shared.extensions.database.Database``;
command-line tools build them directly (``create_db_engine`` and
``UnitOfWork(sessionmaker(bind=engine), None)``). Migrations are in
``portal_shared.migrations``.
"""
import os
import select
import sys
from contextlib import contextmanager

import sqlalchemy as sa
from sqlalchemy.orm import Session
from sqlalchemy.pool import StaticPool

from portal_shared import outbox
from portal_shared.config import get_int
from portal_shared.logs import get_logger
from portal_shared.sqltypes import UtcDateTime  # noqa: F401  (re-exported for the services)

log = get_logger(__name__)

POOL_RECYCLE_SECONDS = 1800


def _real_poll():
    """The operating system's poll(). Eventlet's monkey patching removes ``select.poll`` (its green
    select has none); a zero-timeout poll needs no hub, so the original serves green threads too."""
    if hasattr(select, "poll"):
        return select.poll
    return sys.modules["eventlet.patcher"].original("select").poll


_poll, _POLLIN = _real_poll(), select.POLLIN


# Connections one process may hold on PostgreSQL: ``pool_size`` kept open, ``max_overflow`` more at a
# peak, closed again when returned (a new server process per connection: measured, 0 overflow with 8
# kept open beat 10 + 20 and 4 + 4, bench/README.md "Database connections"). A worker that finds all
# of them taken waits for one (``pool_timeout``, 30 s), a transaction lasting a few milliseconds.
# Every process of every service counts against PostgreSQL's ``max_connections`` (100 by default).
DEFAULT_POOL_SIZE = 8
DEFAULT_POOL_MAX_OVERFLOW = 0


def pool_settings(config):
    """``{"pool_size": n, "max_overflow": n}`` from a service's config (``DB_POOL_SIZE``,
    ``DB_POOL_MAX_OVERFLOW``), for ``create_db_engine`` and whoever must stay within them."""
    return {"pool_size": get_int(config, "DB_POOL_SIZE", DEFAULT_POOL_SIZE),
            "max_overflow": get_int(config, "DB_POOL_MAX_OVERFLOW", DEFAULT_POOL_MAX_OVERFLOW)}


def create_db_engine(url, pool_size=DEFAULT_POOL_SIZE, max_overflow=DEFAULT_POOL_MAX_OVERFLOW):
    """Create an engine for a SQLAlchemy URL, with sane settings per backend (the pool sizes are
    PostgreSQL's; SQLite keeps its own pool)."""
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
    # An UPDATE or DELETE run for many rows goes to the server in pages of statements (psycopg2's
    # ``execute_batch``), one round trip a page, not one per row; INSERTs already go as one multi-row
    # statement (insertmanyvalues). The cost: no per-row count for such a batch (nothing here checks one).
    options = {"executemany_mode": "values_plus_batch"} if parsed.drivername == "postgresql+psycopg2" else {}
    engine = sa.create_engine(parsed, pool_size=pool_size, max_overflow=max_overflow,
                              pool_recycle=POOL_RECYCLE_SECONDS, hide_parameters=True, **options)
    sa.event.listen(engine, "checkout", _discard_if_closed_by_server)
    sa.event.listen(engine, "checkin", _transactional_again)
    return engine


def _transactional_again(dbapi_connection, _record):
    """Checkin hook: a connection a block ran in autocommit (``UnitOfWork.autocommit``) goes back to the
    pool transactional (a local switch of psycopg2's, no round trip)."""
    if dbapi_connection is not None and getattr(dbapi_connection, "autocommit", False):
        dbapi_connection.autocommit = False


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


FRESH_TRANSACTION = "portal_shared.fresh_transaction"  # session.info: begun, no statement run yet


class RetryingSession(Session):
    """A session that runs a transaction again, once, when its first statement finds the
    connection dead (the server closed it after the checkout's check).

    Only the first statement of a transaction with nothing pending is retried: nothing of
    the transaction can have reached the server, so running it again is safe.
    """

    def execute(self, statement, *args, **kwargs):
        # a transaction begun without a statement yet (``UnitOfWork.autocommit``) is still at its first
        fresh = self.info.pop(FRESH_TRANSACTION, False)
        first = (fresh or not self.in_transaction()) and not (self.new or self.dirty or self.deleted)
        try:
            return super().execute(statement, *args, **kwargs)
        except sa.exc.DBAPIError as exc:
            if not (first and exc.connection_invalidated):
                raise
            log.warning("database_reconnected", error=type(exc.orig).__name__)
            self.rollback()
            return super().execute(statement, *args, **kwargs)


class UnitOfWork:
    """A worker's (or a command's) view of the database: one session, explicit transactions.

    ``transaction()`` commits when its block ends normally and rolls back on
    any exception; after a commit that recorded events it wakes ``relay``
    (anything with ``wake()``: the service's outbox relay; None in a command,
    whose events the running service's relay sweeps up) so the events leave
    within milliseconds.
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

    def autocommit(self):
        """Each statement of the session's next transaction commits by itself (no ``BEGIN``, ``COMMIT`` or
        ``ROLLBACK`` round trips); call it before the transaction's first statement.

        psycopg2's own ``autocommit`` switch, set here and cleared when the connection goes back to the
        pool (``_transactional_again``), costs no round trip; SQLAlchemy's ``AUTOCOMMIT`` isolation level
        would cost one (``SET default_transaction_isolation``) at every return to the pool. On SQLite the
        block stays one transaction, committed when it ends."""
        dbapi_connection = self.session.connection().connection.dbapi_connection
        if getattr(dbapi_connection, "autocommit", None) is False:
            dbapi_connection.autocommit = True
        self.session.info[FRESH_TRANSACTION] = True

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
