"""The plugin's testcontainers fallback: its own network, and the clean-up that replaces Ryuk.

.ci/run also runs a part of the suite with AMQP_URI and TEST_DATABASE_URL
pointing at closed ports, so that the plugin starts RabbitMQ and PostgreSQL
with testcontainers for real.
"""
import subprocess

import pytest

from portal_shared.testing import plugin
from tests.containers.conftest import docker


@pytest.fixture
def dead_pid():
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_a_killed_sessions_containers_are_removed_by_the_next_one(engine, dead_pid):
    label = f"{plugin.OWNER_LABEL}={dead_pid}"
    left = docker("create", "--label", label, "--network", "none", "postgres:16").stdout.strip()
    network = docker("network", "create", "--label", label, f"portal-orphan-{dead_pid}").stdout.strip()
    alive = docker("create", "--label", f"{plugin.OWNER_LABEL}=1", "--network", "none", "postgres:16").stdout.strip()
    try:
        plugin._Containers._remove_orphans()
        assert docker("inspect", left, check=False).returncode != 0, "the dead session's container is still there"
        assert docker("network", "inspect", network, check=False).returncode != 0
        assert docker("inspect", alive, check=False).returncode == 0, "a live session's container was removed"
    finally:
        docker("rm", "-f", left, alive, check=False)
        docker("network", "rm", network, check=False)

