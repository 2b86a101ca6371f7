"""The one service Dockerfile: a small multi-stage build, non-root, health-checked,
any service by build argument, no registry needed but the base image's."""
import re

import pytest

from tests.infra.conftest import REPO, SERVICES

DOCKERFILE = REPO / "Dockerfile"


def instructions(dockerfile):
    """``[(INSTRUCTION, arguments)]`` with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text(encoding="utf-8"))
    parsed = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, arguments = line.partition(" ")
            parsed.append((keyword.upper(), arguments.strip()))
    return parsed


def final_stage(parsed):
    starts = [index for index, (keyword, _) in enumerate(parsed) if keyword == "FROM"]
    return parsed[starts[-1]:]


@pytest.fixture
def dockerfile():
    assert DOCKERFILE.is_file(), f"{DOCKERFILE} is missing"
    return instructions(DOCKERFILE)


def test_there_is_one_dockerfile_for_every_service():
    per_service = sorted(str(path.relative_to(REPO)) for path in (REPO / "services").glob("*/Dockerfile"))
    assert per_service == [], f"one Dockerfile at the root, ARG SERVICE; found {per_service}"


def test_no_syntax_directive_so_no_frontend_image_is_fetched():
    # A parser directive is a comment on the first lines: "# syntax=docker/dockerfile:1"
    # makes BuildKit pull a frontend image from a registry at every build.
    head = DOCKERFILE.read_text(encoding="utf-8").splitlines()[:5]
    assert not any(re.match(r"^#\s*syntax\s*=", line, re.I) for line in head)


def test_the_base_image_and_the_service_are_build_arguments(dockerfile):
    args = [arguments for keyword, arguments in dockerfile if keyword == "ARG"]
    assert "PYTHON_IMAGE=python:3.11-slim" in args
    assert args.index("PYTHON_IMAGE=python:3.11-slim") == 0, "the base must be an ARG before the first FROM"
    assert "SERVICE" in args
    stages = [arguments for keyword, arguments in dockerfile if keyword == "FROM"]
    assert stages == ["${PYTHON_IMAGE} AS build", "${PYTHON_IMAGE}"]


def test_the_image_is_a_multi_stage_build_of_wheels(dockerfile):
    runs = " ".join(arguments for keyword, arguments in dockerfile if keyword == "RUN")
    assert "pip wheel" in runs
    assert "requirements.txt" in runs
    final_runs = " ".join(arguments for keyword, arguments in final_stage(dockerfile) if keyword == "RUN")
    assert "--no-index" in final_runs, "the final stage installs only the wheels built in the first"
    assert '"$(cat /tmp/package-name)"' in final_runs and "portal-shared" in final_runs
    assert "services/${SERVICE}/pyproject.toml" in runs, "the package to install is the service's own"


def test_the_service_runs_as_a_non_root_user(dockerfile):
    users = [arguments for keyword, arguments in final_stage(dockerfile) if keyword == "USER"]
    assert users, "the final stage has no USER"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}, f"the final USER is {users[-1]}"


def test_the_image_checks_its_own_health_without_curl(dockerfile):
    checks = [arguments for keyword, arguments in final_stage(dockerfile) if keyword == "HEALTHCHECK"]
    assert len(checks) == 1
    assert "/healthz" in checks[0] and "python" in checks[0]
    assert "curl" not in checks[0] and "wget" not in checks[0]
    assert "_HTTP_ADDRESS" in checks[0] and "PORTAL_HTTP_PORT" in checks[0]


def test_the_image_runs_the_procfile_line_of_its_service(dockerfile):
    cmd = [arguments for keyword, arguments in final_stage(dockerfile) if keyword == "CMD"][-1]
    assert "Procfile" in cmd and "exec $line" in cmd
    copies = [arguments for keyword, arguments in final_stage(dockerfile) if keyword == "COPY"]
    assert "Procfile ./" in copies
    env = " ".join(arguments for keyword, arguments in final_stage(dockerfile) if keyword == "ENV")
    assert "PORTAL_SERVICE=${SERVICE}" in env and "PORTAL_HTTP_PORT=${PORT}" in env
    assert [arguments for keyword, arguments in final_stage(dockerfile) if keyword == "EXPOSE"] == ["${PORT}"]


def test_make_images_builds_every_service_with_its_contract_port():
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    listed = re.search(r"^IMAGE_SERVICES \?= (.+)$", makefile, re.M).group(1).split()
    ports = dict(entry.split(":") for entry in listed)
    assert {service: int(ports[service]) for service in SERVICES} == SERVICES
    procfile = dict(line.split(": ", 1) for line in (REPO / "Procfile").read_text().splitlines() if ": " in line)
    assert set(ports) <= set(procfile), "every image runs a Procfile line"


def test_the_non_root_check_catches_a_root_image(tmp_path):
    path = tmp_path / "Dockerfile"
    path.write_text("FROM python:3.11-slim AS build\nUSER app\nFROM python:3.11-slim\nUSER root\n")
    with pytest.raises(AssertionError):
        test_the_service_runs_as_a_non_root_user(instructions(path))


def test_the_build_context_excludes_local_state_and_secrets():
    rules = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()]
    allowed = rules[rules.index("*") + 1:]
    assert allowed.count("!requirements.txt") == 1 and allowed.count("!Procfile") == 1
    for rule in ("**/*.egg-info", "**/__pycache__", "**/var", "**/.env"):
        assert rule in rules
    assert not any(rule in {"!.git", "!.venv", "!.env", "!tests"} for rule in rules)
