"""``uow.autocommitting()``: a one-statement block commits by itself, and the connection is transactional again after."""
import psycopg2.extensions
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import sessionmaker

from portal_shared.db import RetryingSession, UnitOfWork, create_db_engine
from portal_shared.unit_of_work import DatabaseUnitOfWork


class Bare(DatabaseUnitOfWork):
    """A unit of work without repositories: the block's statements go through ``session``."""

    def _open(self, session):
        self.session = session

    def _seen(self):
        return []

    def _save(self, seen):
        pass


@pytest.fixture
def engine(fresh_database):
    engine = create_db_engine(fresh_database("dossier").url, pool_size=1, max_overflow=0)
    with engine.begin() as connection:
        connection.execute(sa.text("CREATE TABLE IF NOT EXISTS autocommit_probe (n integer)"))
        connection.execute(sa.text("DELETE FROM autocommit_probe"))
    yield engine
    with engine.begin() as connection:
        connection.execute(sa.text("DROP TABLE autocommit_probe"))
    engine.dispose()


def count(other):
    with other.connect() as connection:
        return connection.execute(sa.text("SELECT count(*) FROM autocommit_probe")).scalar()


def test_the_statement_commits_by_itself_with_no_transaction_open(engine, fresh_database):
    other = create_db_engine(fresh_database("dossier").url)
    database = UnitOfWork(sessionmaker(bind=engine, expire_on_commit=False, class_=RetryingSession), None)
    uow = Bare(database)
    try:
        with uow.autocommitting():
            uow.session.execute(sa.text("INSERT INTO autocommit_probe VALUES (1)"))
            dbapi = uow.session.connection().connection.dbapi_connection
            assert dbapi.get_transaction_status() == psycopg2.extensions.TRANSACTION_STATUS_IDLE  # no BEGIN sent
            assert count(other) == 1  # visible to others before the block ends
        with uow:  # the same pooled connection (pool of one), transactional again
            uow.session.execute(sa.text("INSERT INTO autocommit_probe VALUES (2)"))
            dbapi = uow.session.connection().connection.dbapi_connection
            assert dbapi.get_transaction_status() == psycopg2.extensions.TRANSACTION_STATUS_INTRANS
            assert count(other) == 1
        assert count(other) == 1  # left without commit: rolled back
    finally:
        database.close()
        other.dispose()
