"""The service Dockerfiles: small multi-stage builds, non-root, health-checked, one service each."""
import re

import pytest

from tests.infra.conftest import REPO, SERVICES


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


@pytest.fixture(params=SERVICES)
def service(request):
    return request.param


@pytest.fixture
def dockerfile(service):
    path = REPO / "services" / service / "Dockerfile"
    assert path.is_file(), f"{path} is missing"
    return instructions(path)


def test_the_image_is_a_multi_stage_build_on_python_slim(dockerfile):
    stages = [arguments for keyword, arguments in dockerfile if keyword == "FROM"]
    assert len(stages) >= 2, "build wheels in a first stage, install them in a clean one"
    base = dict(arguments.split("=", 1) for keyword, arguments in dockerfile if keyword == "ARG" and "=" in arguments)
    assert base.get("PYTHON_IMAGE") == "python:3.11-slim"
    assert "wheel" in " ".join(arguments for keyword, arguments in dockerfile if keyword == "RUN")


def test_the_service_runs_as_a_non_root_user(dockerfile):
    users = [arguments for keyword, arguments in final_stage(dockerfile) if keyword == "USER"]
    assert users, "the final stage has no USER"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}, f"the final USER is {users[-1]}"


def test_the_image_checks_its_own_health_without_curl(dockerfile, service):
    checks = [arguments for keyword, arguments in final_stage(dockerfile) if keyword == "HEALTHCHECK"]
    assert len(checks) == 1
    assert "/healthz" in checks[0] and "python" in checks[0]
    assert "curl" not in checks[0] and "wget" not in checks[0]
    assert f"{service.upper()}_HTTP_ADDRESS" in checks[0]


def test_the_image_runs_its_service_like_the_procfile(dockerfile, service):
    procfile = dict(line.split(": ", 1) for line in (REPO / "Procfile").read_text().splitlines() if ": " in line)
    cmd = [arguments for keyword, arguments in final_stage(dockerfile) if keyword == "CMD"][-1]
    assert cmd == '["' + '", "'.join(procfile[service].split()) + '"]'
    copies = [arguments for keyword, arguments in final_stage(dockerfile) if keyword == "COPY"]
    assert f"services/{service}/config.yml services/{service}/config.yml" in copies


def test_the_image_exposes_the_contract_port(dockerfile, service):
    exposed = [arguments for keyword, arguments in final_stage(dockerfile) if keyword == "EXPOSE"]
    assert exposed == [str(SERVICES[service])]


def test_the_image_installs_the_pinned_requirements_shared_and_the_service(dockerfile, service):
    runs = " ".join(arguments for keyword, arguments in dockerfile if keyword == "RUN")
    assert "requirements.txt" in runs
    assert f"./shared ./services/{service}" in runs
    assert f"portal-shared portal-{service}" in runs
    assert "--no-index" in runs, "the final stage installs only the wheels built in the first"


def test_the_non_root_check_catches_a_root_image(tmp_path):
    path = tmp_path / "Dockerfile"
    path.write_text("FROM python:3.11-slim AS build\nUSER app\nFROM python:3.11-slim\nUSER root\n")
    with pytest.raises(AssertionError):
        test_the_service_runs_as_a_non_root_user(instructions(path))


def test_the_build_context_excludes_local_state_and_secrets():
    rules = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()]
    assert rules[rules.index("*") + 1:].count("!requirements.txt") == 1
    for rule in ("**/*.egg-info", "**/__pycache__", "**/var", "**/.env"):
        assert rule in rules
    assert not any(rule in {"!.git", "!.venv", "!.env", "!tests"} for rule in rules)
