"""Fixtures for tests against the real broker and databases.

- RabbitMQ: ``AMQP_URI`` (default the local broker). Nameko's ``rabbit_config``
  gives every test a fresh vhost through the management API.
- PostgreSQL: for each service a fresh database per test session, created on
  the server named by ``<SERVICE>_DATABASE_URL`` (default the local server),
  dropped at the end; tables are emptied between tests.
- Where neither server answers but a Docker engine does, testcontainers starts
  them; otherwise the session stops with a clear error, never a silent skip.
  Both are checked lazily, by the fixtures that need them (``broker`` and
  Nameko's ``rabbit_manager``; ``fresh_database``): tests that need no server
  run without one.
"""
import os
import socket
import subprocess
import uuid
from urllib.parse import urlparse

import pytest
import sqlalchemy as sa

from portal_shared.db import create_db_engine, upgrade_database
from portal_shared.migrations import SERVICES

DEFAULT_AMQP_URI = "amqp://guest:guest@127.0.0.1:5672/"
DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def _reachable(host, port, timeout=2.0):
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _docker_available():
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


class _Containers:
    """Servers started by testcontainers when no local ones answer."""

    def __init__(self):
        self.started = []

    def rabbitmq(self):
        from testcontainers.rabbitmq import RabbitMqContainer

        container = RabbitMqContainer("rabbitmq:3-management").start()
        self.started.append(container)
        host, port = container.get_container_host_ip(), container.get_exposed_port(5672)
        api_port = container.get_exposed_port(15672)
        return f"amqp://guest:guest@{host}:{port}/", f"http://guest:guest@{host}:{api_port}"

    def postgres(self):
        from testcontainers.postgres import PostgresContainer

        container = PostgresContainer("postgres:16").start()
        self.started.append(container)
        return container.get_connection_url().replace("+psycopg2", "")

    def stop(self):
        for container in self.started:
            container.stop()


_containers = _Containers()


def pytest_configure(config):
    # where the broker should be; whether it answers is asked only by a test that needs it (``broker``)
    config.option.RABBIT_AMQP_URI = os.environ.get("AMQP_URI") or DEFAULT_AMQP_URI
    if os.environ.get("RABBIT_API_URI"):
        config.option.RABBIT_API_URI = os.environ["RABBIT_API_URI"]
    config.addinivalue_line("markers", "slow: a longer test")


_broker_checked = []


def require_broker(config):
    """Make sure a broker answers (or start one with testcontainers); otherwise stop the session, saying why.

    Checked once, and only when a fixture that needs the broker is set up:
    pure tests (``tests/<service>/unit``) run with no server at all.
    """
    if _broker_checked:
        return
    parts = urlparse(config.option.RABBIT_AMQP_URI)
    if not _reachable(parts.hostname, parts.port or 5672):
        if _docker_available():
            config.option.RABBIT_AMQP_URI, config.option.RABBIT_API_URI = _containers.rabbitmq()
        else:
            pytest.exit(
                f"RabbitMQ is not reachable at {parts.hostname}:{parts.port or 5672} and no Docker engine "
                "is available: start RabbitMQ (with rabbitmq_management) or set AMQP_URI.", returncode=4)
    _broker_checked.append(True)


@pytest.hookimpl(tryfirst=True)
def pytest_fixture_setup(fixturedef, request):
    if fixturedef.argname == "rabbit_manager":  # Nameko's: under rabbit_config, container tests, vhosts
        require_broker(request.config)


@pytest.fixture(scope="session")
def broker(request):
    """``(amqp_uri, api_uri)`` of a broker that answers, for tests that start services out of process."""
    require_broker(request.config)
    return request.config.getoption("RABBIT_AMQP_URI"), request.config.getoption("RABBIT_API_URI")


def pytest_unconfigure(config):
    _containers.stop()


def _server_url(service):
    url = os.environ.get(f"{service.upper()}_DATABASE_URL") or os.environ.get("TEST_DATABASE_URL") or DEFAULT_PG_URL
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() != "postgresql":
        return url
    if not _reachable(parsed.host or "127.0.0.1", parsed.port or 5432):
        if _docker_available():
            return _containers.postgres()
        raise pytest.UsageError(
            f"PostgreSQL is not reachable at {parsed.host}:{parsed.port or 5432} and no Docker engine is "
            f"available: start PostgreSQL or set {service.upper()}_DATABASE_URL."
        )
    return url


class FreshDatabase:
    """A database created for this test session, migrated to head."""

    def __init__(self, service):
        self.service = service
        server_url = sa.engine.make_url(_server_url(service))
        self.backend = server_url.get_backend_name()
        if self.backend == "postgresql":
            self.name = f"test_{service}_{uuid.uuid4().hex[:10]}"
            self.admin_url = server_url.set(database="postgres")
            admin = create_db_engine(self.admin_url.render_as_string(hide_password=False)).execution_options(
                isolation_level="AUTOCOMMIT"
            )
            with admin.connect() as connection:
                connection.execute(sa.text(f'CREATE DATABASE "{self.name}"'))
            admin.dispose()
            self.url = server_url.set(database=self.name).render_as_string(hide_password=False)
        else:
            self.name = None
            self.url = str(server_url)
        self.engine = create_db_engine(self.url)
        upgrade_database(self.engine, SERVICES[service][0])

    def truncate(self):
        """Empty every table but Alembic's version table."""
        inspector = sa.inspect(self.engine)
        tables = [name for name in inspector.get_table_names() if name != "alembic_version"]
        if not tables:
            return
        with self.engine.begin() as connection:
            if self.backend == "postgresql":
                quoted = ", ".join(f'"{name}"' for name in tables)
                connection.execute(sa.text(f"TRUNCATE {quoted} RESTART IDENTITY CASCADE"))
            else:
                for name in tables:
                    connection.execute(sa.text(f'DELETE FROM "{name}"'))

    def drop(self):
        self.engine.dispose()
        if self.backend == "postgresql":
            admin = create_db_engine(self.admin_url.render_as_string(hide_password=False)).execution_options(
                isolation_level="AUTOCOMMIT"
            )
            with admin.connect() as connection:
                connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
            admin.dispose()


@pytest.fixture(scope="session")
def fresh_database():
    """Factory: ``fresh_database("dossier")`` → a session-wide ``FreshDatabase``."""
    created = {}

    def make(service):
        if service not in created:
            created[service] = FreshDatabase(service)
        return created[service]

    yield make
    for database in created.values():
        database.drop()
