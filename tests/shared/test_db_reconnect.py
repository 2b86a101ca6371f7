"""No ping per checkout: a connection the server closed is replaced, a transaction retried once."""
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import sessionmaker

from portal_shared import db
from portal_shared.db import RetryingSession, UnitOfWork, create_db_engine
from tests.helpers import wait_for


@pytest.fixture
def engine(fresh_database):
    engine = create_db_engine(fresh_database("dossier").url)
    yield engine
    engine.dispose()


@pytest.fixture
def admin(fresh_database):
    admin = create_db_engine(fresh_database("dossier").url)
    yield admin
    admin.dispose()


def unit_of_work(engine):
    return UnitOfWork(sessionmaker(bind=engine, expire_on_commit=False, class_=RetryingSession), relay=None)


def backend_pid(engine):
    uow = unit_of_work(engine)
    try:
        with uow.transaction() as session:
            return session.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
    finally:
        uow.close()


def terminate(admin, pid):
    """``pg_terminate_backend`` and wait until the backend is gone."""
    with admin.connect() as connection:
        assert connection.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar_one()
    wait_for(lambda: not _alive(admin, pid), timeout=10, message="the backend to exit")


def _alive(admin, pid):
    with admin.connect() as connection:
        return connection.execute(sa.text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid"),
                                  {"pid": pid}).scalar_one()


def record_statements(engine):
    statements = []
    sa.event.listen(engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    return statements


def test_a_connection_terminated_by_the_server_is_replaced_at_checkout_without_a_ping(engine, admin):
    assert engine.pool._pre_ping is False
    statements = record_statements(engine)
    first = backend_pid(engine)
    terminate(admin, first)
    statements.clear()

    second = backend_pid(engine)  # the next unit of work just works

    assert second != first
    assert statements == ["SELECT pg_backend_pid()"]  # one statement, one round trip: no SELECT 1


class Blind:
    """The checkout's look at the socket sees nothing (a half-open TCP connection)."""

    def register(self, *args):
        pass

    def poll(self, timeout):
        return []


def dead_unnoticed(engine, admin, monkeypatch):
    """The pooled connection's backend is gone, and the checkout cannot tell; returns its pid."""
    pid = backend_pid(engine)
    monkeypatch.setattr(db, "_poll", Blind)
    terminate(admin, pid)
    return pid


def test_a_dead_connection_met_by_the_first_statement_runs_the_transaction_again(engine, admin, monkeypatch):
    first = dead_unnoticed(engine, admin, monkeypatch)

    second = backend_pid(engine)

    assert second != first


def test_a_dead_connection_met_by_an_autocommitting_blocks_statement_runs_it_again(engine, admin, monkeypatch):
    first = dead_unnoticed(engine, admin, monkeypatch)
    uow = unit_of_work(engine)
    try:
        uow.autocommit()  # takes the dead connection without a round trip
        second = uow.session.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
    finally:
        uow.close()
    assert second != first


def test_a_connection_lost_inside_a_transaction_fails_it_and_the_next_one_succeeds(engine, admin):
    uow = unit_of_work(engine)
    with pytest.raises(sa.exc.DBAPIError):
        with uow.transaction() as session:
            pid = session.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
            terminate(admin, pid)
            session.execute(sa.text("SELECT 2"))  # not the first statement: not retried
    uow.close()
    assert backend_pid(engine) != pid
