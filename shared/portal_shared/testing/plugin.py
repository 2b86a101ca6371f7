"""Fixtures for tests against the real broker and databases.

- RabbitMQ: ``AMQP_URI`` (default the local broker). Nameko's ``rabbit_config``
  gives every test a fresh vhost through the management API.
- PostgreSQL: for each service a fresh database per test session, created on
  the server named by ``<SERVICE>_DATABASE_URL`` (default the local server),
  dropped at the end; tables are emptied between tests.
- Where a server does not answer but a Docker engine does, testcontainers
  starts it (``_Containers``: own network, Ryuk replaced by our own clean-up);
  otherwise the session stops with a clear error, never a silent skip.
  Both are checked lazily, by the fixtures that need them (``broker`` and
  Nameko's ``rabbit_manager``; ``fresh_database``): tests that need no server
  run without one.
"""
import os
import socket
import time
import uuid
from urllib.parse import urlparse

import pytest
import sqlalchemy as sa

from portal_shared.db import create_db_engine
from portal_shared.migrations import SERVICES, upgrade_database

DEFAULT_AMQP_URI = "amqp://guest:guest@127.0.0.1:5672/"
DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def _reachable(host, port, timeout=2.0):
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _docker_available():
    """A Docker engine answers (through the Docker SDK testcontainers uses)."""
    try:
        import docker
    except ImportError:
        return False
    try:
        client = docker.from_env(timeout=10)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:  # noqa: BLE001 (no socket, no permission, an engine that does not answer)
        return False


# Labels of the containers started here, so that a later session can remove what a
# killed one left behind (the job of testcontainers' Ryuk, which is disabled below).
OWNER_LABEL = "portal.tests.owner-pid"


class _Containers:
    """Servers started by testcontainers when no local ones answer.

    Both run on a bridge network of their own with their ports published on
    random host ports, so they never collide with servers of the machine.
    Ryuk, testcontainers' reaper, is disabled on purpose: its image comes from
    Docker Hub, which air-gapped machines and this CI cannot reach. Instead the
    containers are removed at the end of the session (also on Ctrl-C, through
    ``pytest_unconfigure``), and the next session removes those of a session
    that was killed (``OWNER_LABEL`` naming a process that no longer exists).
    Set ``TESTCONTAINERS_RYUK_DISABLED=false`` to have Ryuk where it can be pulled.
    """

    RABBITMQ_IMAGE = os.environ.get("PORTAL_TEST_RABBITMQ_IMAGE", "rabbitmq:3-management")
    POSTGRES_IMAGE = os.environ.get("PORTAL_TEST_POSTGRES_IMAGE", "postgres:16")

    def __init__(self):
        self.started = []
        self.network = None
        self._postgres_url = None

    def _prepare(self):
        if self.network is not None:
            return
        os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")
        from testcontainers.core.network import Network

        self._remove_orphans()
        self.network = Network(docker_network_kw={"labels": {OWNER_LABEL: str(os.getpid())}}).create()

    @staticmethod
    def _remove_orphans():
        import docker

        client = docker.from_env()
        try:
            for container in client.containers.list(all=True, filters={"label": OWNER_LABEL}):
                if not _pid_alive(int(container.labels[OWNER_LABEL])):
                    container.remove(force=True, v=True)
            for network in client.networks.list(filters={"label": OWNER_LABEL}):
                if not _pid_alive(int(network.attrs["Labels"][OWNER_LABEL])):
                    network.remove()
        finally:
            client.close()

    def _start(self, container):
        container.with_network(self.network).with_kwargs(labels={OWNER_LABEL: str(os.getpid())})
        self.started.append(container)
        return container.start()

    def rabbitmq(self):
        import requests
        from testcontainers.community.rabbitmq import RabbitMqContainer

        self._prepare()
        container = self._start(RabbitMqContainer(self.RABBITMQ_IMAGE).with_exposed_ports(15672))
        host, port = container.get_container_host_ip(), container.get_exposed_port(5672)
        api_uri = f"http://guest:guest@{host}:{container.get_exposed_port(15672)}"
        deadline = time.monotonic() + 90  # the management plugin starts a moment after AMQP
        while True:
            try:
                if requests.get(f"{api_uri}/api/overview", timeout=5).ok:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise pytest.UsageError(f"the RabbitMQ container's management API did not answer at {host}")
            time.sleep(0.5)
        return f"amqp://guest:guest@{host}:{port}/", api_uri

    def postgres(self):
        """One PostgreSQL container for every service's database."""
        if self._postgres_url is None:
            from testcontainers.community.postgres import PostgresContainer

            self._prepare()
            container = self._start(PostgresContainer(self.POSTGRES_IMAGE, username="postgres", password="postgres",
                                                      dbname="postgres"))
            self._postgres_url = container.get_connection_url(driver=None)
        return self._postgres_url

    def stop(self):
        for container in reversed(self.started):
            try:
                container.stop()
            except Exception:  # noqa: BLE001 (already gone)
                pass
        self.started = []
        if self.network is not None:
            self.network.remove()
            self.network = None


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
            # What the operator commands (portal-deadletters) read, for the tests that run them.
            os.environ["RABBIT_API_URI"] = config.option.RABBIT_API_URI
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
