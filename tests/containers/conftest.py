"""The images and the compose stack, for real, on a Docker engine.

``stack`` builds the images (``make images``), starts docker-compose.yml with
the sandbox profile (RabbitMQ and PostgreSQL in containers, two replicas of
each service, the fakes of the third parties) under a project name of its own,
waits for every HEALTHCHECK, and takes it all down at the end, checking that
nothing is left behind.

Without a Docker engine these tests are skipped, unless
``PORTAL_CONTAINER_TESTS=required`` (what ``.ci/run`` sets after starting an
engine), where a missing engine is a failure.
"""
import json
import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tests.helpers import free_port

REPO = Path(__file__).resolve().parents[2]
DOCKER = "/usr/bin/docker" if os.path.exists("/usr/bin/docker") else (shutil.which("docker") or "docker")
SERVICES = {"dossier": 8002, "payment": 8000, "notify": 8001}
REPLICAS = 2
FIGURES = REPO / "var" / "container-figures.json"


def docker(*args, timeout=120, check=True, **kwargs):
    result = subprocess.run([DOCKER, *args], capture_output=True, text=True, timeout=timeout, **kwargs)
    if check and result.returncode != 0:
        raise AssertionError(f"docker {' '.join(args[:3])} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def engine_answers():
    try:
        return subprocess.run([DOCKER, "info"], capture_output=True, timeout=15).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def record(**figures):
    """Keep the measured figures (README, operations section) in var/."""
    FIGURES.parent.mkdir(exist_ok=True)
    known = json.loads(FIGURES.read_text()) if FIGURES.exists() else {}
    known.update(figures)
    FIGURES.write_text(json.dumps(known, indent=2))


@pytest.fixture(scope="session")
def engine():
    if not engine_answers():
        message = ("no Docker engine answers (scripts/containers/engine.sh starts one; "
                   "`make engine` also makes the base images)")
        if os.environ.get("PORTAL_CONTAINER_TESTS") == "required":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return DOCKER


@pytest.fixture(scope="session")
def images(engine):
    """The base images (pulled or stand-ins), then every service image from the one Dockerfile."""
    if any(docker("image", "inspect", name, check=False).returncode for name in
           ("python:3.11-slim", "rabbitmq:3-management", "postgres:16", "nginx:1.27-alpine")):
        subprocess.run([str(REPO / "scripts" / "containers" / "stand-ins.sh")], check=True, timeout=900)
    started = time.monotonic()
    result = subprocess.run(["make", "--no-print-directory", "images", f"DOCKER={DOCKER}"], cwd=REPO,
                            capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stdout + result.stderr
    sizes = {}
    for service in [*SERVICES, "sandbox"]:
        size = docker("image", "inspect", "-f", "{{.Size}}", f"portal/{service}:latest").stdout.strip()
        sizes[service] = round(int(size) / 1e6)
    record(build_seconds=round(time.monotonic() - started, 1), image_mb=sizes)
    return sizes


class Stack:
    """One compose project: docker-compose.yml + the sandbox profile, with the example env file."""

    def __init__(self):
        self.project = f"portaltest{uuid.uuid4().hex[:8]}"
        self.env = {**os.environ, "RABBITMQ_MANAGEMENT_PORT": str(free_port()), "DOCKER_BUILDKIT": "1"}

    def compose(self, *args, timeout=300, check=True, input=None):
        command = [DOCKER, "compose", "-p", self.project, "--env-file", "infra/compose.env.example",
                   "--env-file", "infra/compose.sandbox.env", "--profile", "sandbox", *args]
        result = subprocess.run(command, cwd=REPO, env=self.env, capture_output=True, text=True,
                                timeout=timeout, input=input)
        if check and result.returncode != 0:
            raise AssertionError(f"docker compose {' '.join(args)} failed ({result.returncode}):\n"
                                 f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        return result

    def containers(self, service=None):
        """``{name: inspect}`` of the project's containers (of one service)."""
        filters = ["--filter", f"label=com.docker.compose.project={self.project}"]
        if service:
            filters += ["--filter", f"label=com.docker.compose.service={service}"]
        ids = docker("ps", "-aq", *filters).stdout.split()
        if not ids:
            return {}
        return {item["Name"].lstrip("/"): item for item in json.loads(docker("inspect", *ids).stdout)}

    def python(self, script, *args, timeout=300):
        """Run a script in a throw-away sandbox container on the stack's network (it has nameko, requests)."""
        return self.compose("run", "--rm", "-T", "--no-deps", "sandbox", "python", "-", *args,
                            input=script, timeout=timeout)

    def python_streaming(self, script, *args):
        """Like ``python`` but returns the running process, to read its output line by line."""
        command = [DOCKER, "compose", "-p", self.project, "--env-file", "infra/compose.env.example",
                   "--env-file", "infra/compose.sandbox.env", "--profile", "sandbox",
                   "run", "--rm", "-T", "--no-deps", "sandbox", "python", "-", *args]
        process = subprocess.Popen(command, cwd=REPO, env=self.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        process.stdin.write(script)
        process.stdin.close()
        return process

    def logs(self):
        return self.compose("logs", "--no-color", "--tail", "60", check=False).stdout


@pytest.fixture(scope="module")
def stack(images):
    stack = Stack()
    started = time.monotonic()
    try:
        stack.compose("up", "-d", "--no-build", "--wait", "--wait-timeout", "300", timeout=420)
    except AssertionError:
        print(stack.logs())
        stack.compose("down", "-v", "--remove-orphans", "--timeout", "10", check=False)
        raise
    record(healthy_seconds=round(time.monotonic() - started, 1))
    yield stack
    stack.compose("down", "-v", "--remove-orphans", "--timeout", "30", timeout=300)
    left = docker("ps", "-aq", "--filter", f"label=com.docker.compose.project={stack.project}").stdout.split()
    networks = docker("network", "ls", "-q", "--filter", f"label=com.docker.compose.project={stack.project}").stdout.split()
    volumes = docker("volume", "ls", "-q", "--filter", f"label=com.docker.compose.project={stack.project}").stdout.split()
    assert not (left or networks or volumes), f"compose down left containers {left}, networks {networks}, volumes {volumes}"
