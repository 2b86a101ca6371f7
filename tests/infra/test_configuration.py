"""Every variable of CONTRACT section 1 reaches the services that use it, and only those,
in docker-compose.yml and in the Kubernetes ConfigMaps/Secrets; credentials are never literals."""
import re

import pytest

from tests.infra.conftest import SECRET_VARIABLES, SERVICES, k8s_objects, parse_contract_variables


def expected_for(contract_variables, service):
    return {name for name, users in contract_variables.items() if service in users}


def foreign_to(contract_variables, service):
    return {name for name, users in contract_variables.items() if service not in users}


def compose_environment(compose, service):
    environment = compose["services"][service].get("environment") or {}
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) if "=" in item else (item, None) for item in environment)
    return environment


def k8s_environment(k8s_documents, service):
    """``{variable: (kind, object name)}`` as the service's container sees it."""
    config_maps = k8s_objects(k8s_documents, "ConfigMap")
    secrets = k8s_objects(k8s_documents, "Secret")
    container = k8s_objects(k8s_documents, "Deployment")[service]["spec"]["template"]["spec"]["containers"][0]
    seen = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            name = source["configMapRef"]["name"]
            assert name in config_maps, f"{service} reads ConfigMap {name}, which is not in the kustomization"
            seen.update({key: ("ConfigMap", name) for key in config_maps[name].get("data", {})})
        if "secretRef" in source:
            name = source["secretRef"]["name"]
            assert name in secrets, f"{service} reads Secret {name}, which is not in the kustomization"
            secret = secrets[name]
            keys = {**secret.get("data", {}), **secret.get("stringData", {})}
            seen.update({key: ("Secret", name) for key in keys})
    for variable in container.get("env", []):
        kind = "Secret" if "secretKeyRef" in variable.get("valueFrom", {}) else "ConfigMap"
        seen[variable["name"]] = (kind, "env")
    return seen


def test_the_contract_table_is_read(contract_variables):
    # A few anchors of the table, so a parser that silently reads nothing fails.
    assert contract_variables["AMQP_URI"] == set(SERVICES)
    assert contract_variables["PAYMENT_DATABASE_URL"] == {"payment"}
    assert contract_variables["SMTP_SECURITY"] == {"notify"}
    assert contract_variables["DOSSIER_PROCEDURES_FILE"] == {"dossier"}
    assert len(contract_variables) >= 35


def test_the_contract_parser_refuses_a_table_it_cannot_attribute():
    text = "## 1. Processes\n| variable | used by | default |\n|---|---|---|\n| `X_Y` | the cloud | 1 |\n## 2. Next\n"
    with pytest.raises(ValueError, match="X_Y"):
        parse_contract_variables(text)


@pytest.mark.parametrize("service", SERVICES)
def test_compose_gives_each_service_exactly_its_contract_variables(compose, contract_variables, service):
    environment = set(compose_environment(compose, service))
    missing = expected_for(contract_variables, service) - environment
    foreign = foreign_to(contract_variables, service) & environment
    assert not missing, f"docker-compose.yml: {service} lacks {sorted(missing)}"
    assert not foreign, f"docker-compose.yml: {service} gets other services' variables {sorted(foreign)}"


@pytest.mark.parametrize("service", SERVICES)
def test_kubernetes_gives_each_service_exactly_its_contract_variables(k8s_documents, contract_variables, service):
    environment = k8s_environment(k8s_documents, service)
    missing = expected_for(contract_variables, service) - set(environment)
    foreign = foreign_to(contract_variables, service) & set(environment)
    assert not missing, f"infra/k8s: {service} lacks {sorted(missing)}"
    assert not foreign, f"infra/k8s: {service} gets other services' variables {sorted(foreign)}"


@pytest.mark.parametrize("service", SERVICES)
def test_kubernetes_keeps_credentials_in_secrets_and_the_rest_in_config_maps(k8s_documents, service):
    for variable, (kind, name) in k8s_environment(k8s_documents, service).items():
        expected_kind = "Secret" if variable in SECRET_VARIABLES else "ConfigMap"
        assert kind == expected_kind, f"{service}: {variable} comes from {kind} {name}, expected a {expected_kind}"


def test_kubernetes_secrets_hold_only_placeholders(k8s_documents):
    for name, secret in k8s_objects(k8s_documents, "Secret").items():
        assert "data" not in secret, f"Secret {name}: use stringData placeholders, not encoded data"
        for key, value in secret["stringData"].items():
            password = re.match(r"^[a-z]+://[^:/@]+:([^@]*)@", value)
            if password:
                assert password.group(1) == "REPLACE_ME", f"Secret {name}/{key} holds a literal password"
            else:
                assert value == "", f"Secret {name}/{key} must stay an empty placeholder in git"


INTERPOLATION = re.compile(r"^\$\{[A-Z][A-Z0-9_]*(:?[-?][^}]*)?\}$")


@pytest.mark.parametrize("service", SERVICES)
def test_compose_takes_every_credential_from_the_environment(compose, service):
    for variable, value in compose_environment(compose, service).items():
        if variable not in SECRET_VARIABLES:
            continue
        value = str(value)
        url = re.match(r"^[a-z]+://[^:/@]+:([^@]*)@", value)
        secret_part = url.group(1) if url else value
        assert INTERPOLATION.match(secret_part), (
            f"docker-compose.yml: {service}.{variable} must come from ${{VAR}} interpolation, got {value!r}"
        )
        assert not re.search(r"^\$\{[A-Z0-9_]+:?-[^}]", secret_part), (
            f"docker-compose.yml: {service}.{variable} has a literal default secret"
        )


def test_the_credential_check_catches_a_literal_password(compose):
    broken = {"services": {"payment": {"environment": {"AMQP_URI": "amqp://payment:hunter2@rabbitmq:5672/portal"}}}}
    with pytest.raises(AssertionError, match="interpolation"):
        test_compose_takes_every_credential_from_the_environment(broken, "payment")
