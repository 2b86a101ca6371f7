"""The edge's configuration: one set of doors and limits for docker-compose (nginx) and Kubernetes (Ingress)."""
import re

from tests.infra.conftest import REPO, k8s_objects

TEMPLATE = REPO / "infra" / "nginx" / "edge.conf.template"
COMPOSE_DEFAULTS = {"EDGE_RATE_PER_SECOND": "20", "EDGE_BURST": "40", "EDGE_CONNECTIONS_PER_CLIENT": "20"}


def directive(text, name):
    match = re.search(rf"^\s*{name}\s+([^;]+);", text, re.M)
    assert match, f"{name} missing from {TEMPLATE.name}"
    return match.group(1).strip()


def test_the_template_sets_deadlines_limits_and_only_the_callback_doors():
    text = TEMPLATE.read_text()
    assert directive(text, "client_max_body_size") == "64k"
    assert directive(text, "client_body_buffer_size") == "64k"
    assert directive(text, "client_body_timeout") == "5s" and directive(text, "client_header_timeout") == "5s"
    assert directive(text, "limit_req_status") == "429" and directive(text, "limit_conn_status") == "429"
    assert "limit_req zone=edge_callbacks_rate" in text and "limit_conn edge_callbacks_conn" in text
    locations = re.findall(r"^\s*location\s+(.+?)\s*\{\s*$", text, re.M)
    assert locations == ["= /callbacks/vnpay/ipn", "= /callbacks/momo/ipn",
                         '~ "^/callbacks/esms/[A-Za-z0-9._~-]{1,256}$"', "/"]
    assert re.search(r"location / \{\s*return 404;\s*\}", text)


def test_compose_renders_the_template_with_its_variables(compose):
    edge = compose["services"]["edge"]
    assert "./infra/nginx/edge.conf.template:/etc/nginx/templates/edge.conf.template:ro" in edge["volumes"]
    needed = set(re.findall(r"\$\{([A-Z0-9_]+)\}", TEMPLATE.read_text()))
    assert needed == set(edge["environment"])
    for name, default in COMPOSE_DEFAULTS.items():
        assert edge["environment"][name] == f"${{{name}:-{default}}}"
    assert edge["environment"]["PAYMENT_UPSTREAM"] == "payment:8000"
    assert edge["environment"]["NOTIFY_UPSTREAM"] == "notify:8001"


def test_the_ingress_routes_the_same_doors_with_the_same_limits(k8s_documents):
    ingress = k8s_objects(k8s_documents, "Ingress")["callbacks"]
    annotations = {key.rsplit("/", 1)[1]: value for key, value in ingress["metadata"]["annotations"].items()}
    assert annotations["proxy-body-size"] == "64k" and annotations["client-body-buffer-size"] == "64k"
    assert annotations["limit-rps"] == COMPOSE_DEFAULTS["EDGE_RATE_PER_SECOND"]
    assert int(annotations["limit-rps"]) * int(annotations["limit-burst-multiplier"]) == int(
        COMPOSE_DEFAULTS["EDGE_BURST"])
    assert annotations["limit-connections"] == COMPOSE_DEFAULTS["EDGE_CONNECTIONS_PER_CLIENT"]
    paths = [(p["path"], p["backend"]["service"]["name"]) for rule in ingress["spec"]["rules"]
             for p in rule["http"]["paths"]]
    assert paths == [("/callbacks/vnpay/ipn", "payment"), ("/callbacks/momo/ipn", "payment"),
                     ("/callbacks/esms/[A-Za-z0-9._~-]+$", "notify")]
    assert not any(word in path for path, _ in paths for word in ("healthz", "readyz", "metrics"))
