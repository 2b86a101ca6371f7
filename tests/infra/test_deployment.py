"""Replicas, health gating, probes, limits and autoscaling in compose and Kubernetes."""
import pytest

from tests.infra.conftest import REPO, SERVICES, k8s_objects


@pytest.mark.parametrize("service", SERVICES)
def test_compose_runs_two_replicas_started_only_once_broker_and_database_are_healthy(compose, service):
    definition = compose["services"][service]
    assert definition["deploy"]["replicas"] == 2
    assert definition["depends_on"] == {
        "rabbitmq": {"condition": "service_healthy"},
        "postgres": {"condition": "service_healthy"},
    }
    assert "/healthz" in " ".join(definition["healthcheck"]["test"])
    build = definition["build"]
    assert (build["context"], build["dockerfile"]) == (".", "Dockerfile"), "one Dockerfile for every service"
    assert build["args"]["SERVICE"] == service
    assert build["args"]["PORT"] == str(SERVICES[service])
    assert build["args"]["PYTHON_IMAGE"] == "${PYTHON_IMAGE:-python:3.11-slim}"


def test_the_sandbox_is_in_compose_behind_a_profile_that_is_off_by_default(compose):
    sandbox = compose["services"]["sandbox"]
    assert sandbox["profiles"] == ["sandbox"]
    assert sandbox["build"]["args"]["SERVICE"] == "sandbox"
    for name, definition in compose["services"].items():
        if name != "sandbox":
            assert "profiles" not in definition, f"{name} must start without a profile"
    env = dict(line.split("=", 1) for line in (REPO / "infra" / "compose.sandbox.env").read_text().splitlines()
               if "=" in line and not line.startswith("#"))
    assert env["VNPAY_PAYMENT_URL"].startswith("http://sandbox:8090/")
    assert env["SMTP_HOST"] == "sandbox"


def test_compose_broker_and_database_have_health_checks_and_load_the_infra_files(compose):
    rabbitmq, postgres = compose["services"]["rabbitmq"], compose["services"]["postgres"]
    assert rabbitmq["image"] == "rabbitmq:3-management"
    assert "./infra/rabbitmq/definitions.json:/etc/rabbitmq/definitions.json:ro" in rabbitmq["volumes"]
    assert "./infra/rabbitmq/rabbitmq.conf:/etc/rabbitmq/rabbitmq.conf:ro" in rabbitmq["volumes"]
    assert "./infra/postgres:/docker-entrypoint-initdb.d:ro" in postgres["volumes"]
    for definition in (rabbitmq, postgres):
        assert definition["healthcheck"]["test"][0] == "CMD"
    conf = (REPO / "infra" / "rabbitmq" / "rabbitmq.conf").read_text()
    assert "definitions.local.path = /etc/rabbitmq/definitions.json" in conf


@pytest.mark.parametrize("service", SERVICES)
def test_compose_points_each_service_at_its_own_database_and_broker_user(compose, service):
    environment = compose["services"][service]["environment"]
    assert environment[f"{service.upper()}_DATABASE_URL"].startswith(f"postgresql://{service}:")
    assert environment[f"{service.upper()}_DATABASE_URL"].endswith(f"@postgres:5432/{service}")
    assert environment["AMQP_URI"].startswith(f"amqp://{service}:")
    assert environment["AMQP_URI"].endswith("@rabbitmq:5672/portal")
    assert environment[f"{service.upper()}_HTTP_ADDRESS"] == f"0.0.0.0:{SERVICES[service]}"


def test_the_postgres_init_script_creates_one_owned_database_per_service():
    script = (REPO / "infra" / "postgres" / "10-create-service-databases.sh").read_text()
    assert script.startswith("#!/bin/bash")
    assert "for service in dossier payment notify" in script
    assert 'CREATE DATABASE :"name" OWNER :"name"' in script


@pytest.fixture(params=SERVICES)
def service(request):
    return request.param


def container_of(k8s_documents, service):
    return k8s_objects(k8s_documents, "Deployment")[service]["spec"]["template"]["spec"]["containers"][0]


def test_each_deployment_probes_readyz_and_healthz_on_its_port(k8s_documents, service):
    container = container_of(k8s_documents, service)
    assert container["ports"] == [{"name": "http", "containerPort": SERVICES[service], "protocol": "TCP"}]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    procfile = dict(line.split(": ", 1) for line in (REPO / "Procfile").read_text().splitlines() if ": " in line)
    assert container["command"] == procfile[service].split()


def test_each_deployment_has_requests_limits_and_runs_non_root(k8s_documents, service):
    deployment = k8s_objects(k8s_documents, "Deployment")[service]
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert set(container["resources"]["requests"]) == {"cpu", "memory"}
    assert set(container["resources"]["limits"]) == {"cpu", "memory"}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert deployment["spec"]["replicas"] >= 2


def test_each_deployment_has_a_service_and_an_autoscaler(k8s_documents, service):
    kube_service = k8s_objects(k8s_documents, "Service")[service]
    assert kube_service["spec"]["selector"] == {"app.kubernetes.io/name": service}
    assert kube_service["spec"]["ports"][0]["targetPort"] == "http"
    hpa = k8s_objects(k8s_documents, "HorizontalPodAutoscaler")[service]
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": service}
    assert 2 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]


def test_the_namespace_enforces_the_restricted_pod_security_standard(k8s_documents):
    namespace = k8s_objects(k8s_documents, "Namespace")["portal"]
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
