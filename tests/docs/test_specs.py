"""docs/asyncapi.yaml and docs/openapi.yaml: valid against the official JSON schemas
(vendored in docs/schemas/), generated from the services' marshmallow schemas, and
true to what the services really take, answer and publish."""
import copy
import importlib.util
import inspect
import json
import re
from datetime import timedelta
from types import SimpleNamespace

import pytest
import yaml
from jsonschema import Draft7Validator, Draft202012Validator
from marshmallow import fields
from nameko.extensions import ENTRYPOINT_EXTENSIONS_ATTR
from nameko.rpc import Rpc
from nameko.web.handlers import HttpRequestHandler
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from portal_shared.timeutil import utcnow

from tests.infra.conftest import REPO

DOCS = REPO / "docs"
spec = importlib.util.spec_from_file_location("portal_specs", REPO / "scripts" / "specs.py")
specs = importlib.util.module_from_spec(spec)
spec.loader.exec_module(specs)

ASYNCAPI = yaml.safe_load((DOCS / "asyncapi.yaml").read_text(encoding="utf-8"))
OPENAPI = yaml.safe_load((DOCS / "openapi.yaml").read_text(encoding="utf-8"))
SERVICES = specs._imports()


def official_validator(name):
    schema = json.loads((DOCS / "schemas" / name).read_text(encoding="utf-8"))
    if name.startswith("asyncapi"):
        registry = Registry().with_resource(schema["$id"], Resource.from_contents(schema, DRAFT7)).crawl()
        return Draft7Validator(schema, registry=registry)
    return Draft202012Validator(schema)


def errors(validator, document):
    return [f"{'/'.join(map(str, error.absolute_path))}: {error.message[:200]}" for error in validator.iter_errors(document)]


def payload_validator(component):
    """A validator for ``#/components/schemas/<component>`` of the AsyncAPI document ($refs resolved)."""
    registry = Registry().with_resource("urn:asyncapi", Resource.from_contents(ASYNCAPI, DRAFT7))
    return Draft7Validator({"$ref": f"urn:asyncapi#/components/schemas/{component}"}, registry=registry)


def assert_valid(component, value):
    problems = errors(payload_validator(component), value)
    assert not problems, f"{component}: {problems}"


# --- the documents themselves -------------------------------------------------------

def test_the_documents_are_generated_from_the_current_code(capsys):
    assert specs.main(["--check"]) == 0, capsys.readouterr().out


@pytest.mark.parametrize("document, schema", [(ASYNCAPI, "asyncapi-3.0.0.json"), (OPENAPI, "openapi-3.1.json")],
                         ids=["asyncapi", "openapi"])
def test_the_documents_follow_the_official_json_schemas(document, schema):
    assert not errors(official_validator(schema), document)


def test_the_official_schemas_reject_broken_documents():
    broken = copy.deepcopy(ASYNCAPI)
    broken["operations"]["dossier_submit_dossier"]["action"] = "call"
    broken["channels"]["dossier.submit_dossier"]["bindings"]["amqp"]["exchange"]["type"] = "round-robin"
    assert len(errors(official_validator("asyncapi-3.0.0.json"), broken)) >= 2
    broken = copy.deepcopy(OPENAPI)
    broken["paths"]["/healthz"]["get"]["responses"] = {"200": {"summary": "no description"}}
    broken["openapi"] = "3.0.3"
    assert len(errors(official_validator("openapi-3.1.json"), broken)) >= 2


def test_the_vendored_schemas_record_their_source_and_version():
    source = (DOCS / "schemas" / "SOURCE.md").read_text(encoding="utf-8")
    assert "@asyncapi/specs" in source and "6.11.1" in source
    assert "openapi-spec-validator" in source and "0.9.0" in source
    assert "/3.0.0/" in json.loads((DOCS / "schemas" / "asyncapi-3.0.0.json").read_text())["$id"]


# --- RPC -------------------------------------------------------------------------

def rpc_methods(service_class):
    return {name for name, member in inspect.getmembers(service_class, inspect.isfunction)
            if any(isinstance(ext, Rpc) for ext in getattr(member, ENTRYPOINT_EXTENSIONS_ATTR, ()))}


def test_every_rpc_method_of_the_services_is_documented_and_nothing_else():
    documented = {(op["title"]) for op in ASYNCAPI["operations"].values() if "reply" in op}
    offered = {f"{service}.{method}" for service, (cls, _) in SERVICES.items() for method in rpc_methods(cls)}
    internal = {f"{service}.{method}" for method, service in specs.INTERNAL_RPC.items()}
    assert internal <= offered  # an internal method that is gone leaves the list too
    assert documented == offered - internal


@pytest.mark.parametrize("method", specs.RPC)
def test_the_documented_arguments_are_the_method_signature(method):
    service, _, _, _ = specs.RPC[method]
    cls, _ = SERVICES[service]
    signature = inspect.signature(getattr(cls, method)).parameters
    parameters = [name for name in signature if name != "self"]
    payload = ASYNCAPI["components"]["messages"][f"{service}.{method}.request"]["payload"]
    kwargs = payload["properties"]["kwargs"]
    assert payload["x-parameter-order"] == parameters
    assert list(kwargs["properties"]) == parameters
    without_default = [name for name in parameters if signature[name].default is inspect.Parameter.empty]
    assert kwargs.get("required", []) == without_default, "required in the document = no default in the code"


def marshmallow_fields(schema_class):
    return schema_class().fields


@pytest.mark.parametrize("method", [m for m, (_, schema, _, _) in specs.RPC.items() if schema])
def test_the_documented_arguments_match_the_marshmallow_schema_field_by_field(method):
    service, schema_name, _, _ = specs.RPC[method]
    schema_class = getattr(SERVICES[service][1], schema_name)
    documented = ASYNCAPI["components"]["messages"][f"{service}.{method}.request"]["payload"]["properties"]["kwargs"]
    compare(schema_class, documented, schema_name)


def compare(schema_class, documented, where):
    actual = marshmallow_fields(schema_class)
    assert set(documented["properties"]) == set(actual), where
    assert set(documented.get("required", [])) == {name for name, field in actual.items() if field.required}, where
    for name, field in actual.items():
        prop = documented["properties"][name]
        types = prop["type"] if isinstance(prop["type"], list) else [prop["type"]]
        assert ("null" in types) == field.allow_none, f"{where}.{name}: nullable"
        expected = specs.field_schema(field)
        for keyword in ("enum", "minLength", "maxLength", "pattern", "minimum", "maximum", "format", "default"):
            if keyword in expected:
                assert prop.get(keyword) == expected[keyword], f"{where}.{name}: {keyword}"
        if isinstance(field, fields.Nested):
            compare(type(field.schema), prop, f"{where}.{name}")


def test_the_field_comparison_catches_a_drifted_document():
    from dossier.schemas import ActOnDossierSchema

    documented = copy.deepcopy(
        ASYNCAPI["components"]["messages"]["dossier.act_on_dossier.request"]["payload"]["properties"]["kwargs"])
    documented["properties"]["action"]["enum"].remove("withdraw")
    with pytest.raises(AssertionError, match="action: enum"):
        compare(ActOnDossierSchema, documented, "ActOnDossierSchema")


# --- results ----------------------------------------------------------------------

@pytest.fixture
def dossier():
    from dossier.domain.model import Applicant, Dossier, Procedure

    procedure = Procedure("LLTP-01", "Cấp Phiếu lý lịch tư pháp", "STP-HN", 200_000, 10)
    applicant = Applicant("Nguyễn Văn An", "001099012345", "0912345678", None, "Hà Nội")
    dossier = Dossier.submit("STP-HN-261204-ABCDEF", procedure, applicant, {"so_ban": 1}, utcnow())
    dossier.act("accept", "can-bo", None, utcnow())
    return dossier


def test_a_real_dossier_matches_the_documented_result(dossier):
    from dossier.schemas import dump_dossier

    dumped = dump_dossier(dossier)
    assert_valid("Dossier", dumped)
    assert_valid("DossierList", {"items": [dumped], "total": 1})
    dumped["extra"] = 1
    with pytest.raises(AssertionError):
        assert_valid("Dossier", dumped)


def payment_row(status="succeeded", **extra):
    """A payment aggregate as the repository loads it."""
    from payment.domain.model import Payment, Status

    now = utcnow()
    fields = {"txn_ref": "P2612040001", "dossier_code": "STP-HN-261204-ABCDEF", "amount": 200_000,
              "gateway": "vnpay", "status": Status(status), "pay_url": "https://pay.example/x",
              "gateway_txn_no": "14412345", "created_at": now, "expires_at": now + timedelta(minutes=15),
              "updated_at": now, "paid_at": now, **extra}
    return Payment(**fields)


def payment_event(kind, payment, **extra):
    """The domain event ``kind`` (``PaymentSucceeded``...) of ``payment``, as the aggregate records it."""
    from payment.domain import events

    return getattr(events, kind)(txn_ref=payment.txn_ref, dossier_code=payment.dossier_code, amount=payment.amount,
                                 gateway=payment.gateway, gateway_txn_no=payment.gateway_txn_no,
                                 paid_at=payment.paid_at, **extra)


def test_a_real_payment_matches_the_documented_result():
    from payment.schemas import dump_payment

    assert_valid("Payment", dump_payment(payment_row()))
    assert_valid("PaymentList", [dump_payment(payment_row("refund_pending", refund_error="refused by gateway"))])
    pending = dump_payment(payment_row("pending", gateway_txn_no=None, paid_at=None))
    assert_valid("Payment", pending)


def test_a_real_notification_matches_the_documented_result():
    from notify.use_cases import dump_notification

    row = SimpleNamespace(id=7, channel="sms", recipient="0912345678", template="accepted",
                          reference="STP-HN-261204-ABCDEF", status="sent", provider="esms", attempts=1,
                          created_at=utcnow(), sent_at=utcnow())
    assert_valid("Notification", dump_notification(row))
    assert_valid("NotificationList", [dump_notification(row)])


# --- events -------------------------------------------------------------------------

@pytest.fixture
def published():
    """The events the producers' own code builds, captured where they go into the outbox."""
    from dossier import messagebus as dossier_bus
    from payment import messagebus

    captured = []

    def record(session, event_type, payload, **kwargs):
        captured.append((event_type, json.loads(json.dumps(payload))))

    class Outbox:  # a unit of work hands the bus an outbox; this one keeps what it is given
        def add(self, event_type, payload, aggregate_key, headers=None):
            record(None, event_type, payload)

    class UnitOfWork:
        outbox = Outbox()

    def emit(kind, payment, **extra):
        messagebus.record_in_outbox(payment_event(kind, payment, **extra), UnitOfWork())

    def publish_changes(dossier):
        for change in dossier.events:
            dossier_bus.record_in_outbox(change, UnitOfWork())

    return captured, publish_changes, emit


def test_the_published_events_match_the_documented_payloads(published, dossier):
    captured, publish_changes, emit = published
    publish_changes(dossier)
    emit("PaymentSucceeded", payment_row())
    emit("PaymentFailed", payment_row("failed", paid_at=None), reason="24: cancelled")
    emit("PaymentRefunded", payment_row("refunded"))
    kinds = [event_type for event_type, _ in captured]
    assert kinds == ["dossier_status_changed"] * 3 + ["payment_succeeded", "payment_failed", "payment_refunded"]
    for event_type, payload in captured:
        assert_valid("".join(part.title() for part in event_type.split("_")) + "Event", payload)


CONSUMERS = {
    "dossier.on_payment_succeeded": ("dossier", "PaymentSucceededSchema", "PaymentSucceededEvent"),
    "payment.on_dossier_status_changed": ("payment", "DossierStatusChangedSchema", "DossierStatusChangedEvent"),
    "notify.on_dossier_status_changed": ("notify", "DossierStatusChangedSchema", "DossierStatusChangedEvent"),
    "notify.on_payment_succeeded": ("notify", "PaymentEventSchema", "PaymentSucceededEvent"),
    "notify.on_payment_refunded": ("notify", "PaymentEventSchema", "PaymentRefundedEvent"),
    "portal_sync.on_dossier_status_changed": ("portal_sync", "StatusChangedSchema", "DossierStatusChangedEvent"),
    "portal_sync.on_payment_succeeded": ("portal_sync", "PaymentEventSchema", "PaymentSucceededEvent"),
    "portal_sync.on_payment_refunded": ("portal_sync", "PaymentEventSchema", "PaymentRefundedEvent"),
}
JSON_TYPES = {fields.String: "string", fields.Integer: "integer", fields.Nested: "object", fields.Dict: "object"}


def test_every_documented_consumer_is_a_real_handler():
    documented = {op["title"] for op in ASYNCAPI["operations"].values()
                  if op["action"] == "receive" and "reply" not in op}
    assert documented == set(CONSUMERS)
    for consumer in CONSUMERS:
        service, handler = consumer.split(".")
        assert hasattr(SERVICES[service][0], handler), consumer


@pytest.mark.parametrize("consumer", CONSUMERS)
def test_each_consumer_schema_reads_the_documented_event(consumer):
    service, schema_name, component = CONSUMERS[consumer]
    schema_class = getattr(SERVICES[service][1], schema_name)
    event = ASYNCAPI["components"]["schemas"][component]
    for name, field in schema_class().fields.items():
        assert name in event["properties"], f"{consumer} reads {name}, which the event does not have"
        if field.required:
            assert name in event["required"], f"{consumer} requires {name}, which the event may leave out"
        documented = event["properties"][name]["type"]
        documented = documented if isinstance(documented, list) else [documented]
        expected = next(kind for cls, kind in JSON_TYPES.items() if isinstance(field, cls))
        assert expected in documented, f"{consumer}: {name} is {documented}, the consumer reads {expected}"


def test_each_consumer_schema_loads_a_real_event(published, dossier):
    captured, publish_changes, emit = published
    publish_changes(dossier)
    emit("PaymentSucceeded", payment_row())
    emit("PaymentRefunded", payment_row("refunded"))
    by_type = {event_type: payload for event_type, payload in captured}
    for consumer, (service, schema_name, component) in CONSUMERS.items():
        event_type = re.sub(r"(?<!^)(?=[A-Z])", "_", component.removesuffix("Event")).lower()
        getattr(SERVICES[service][1], schema_name)().load(by_type[event_type])


# --- HTTP ------------------------------------------------------------------------------

def http_routes(service_class):
    routes = set()
    for _, member in inspect.getmembers(service_class, inspect.isfunction):
        for extension in getattr(member, ENTRYPOINT_EXTENSIONS_ATTR, ()):
            if isinstance(extension, HttpRequestHandler):
                # werkzeug's "<token>" / "<string:token>" is OpenAPI's "{token}"
                url = re.sub(r"<(?:[a-z]+:)?([A-Za-z_][A-Za-z0-9_]*)>", r"{\1}", extension.url)
                routes.add((extension.method.lower(), url))
    return routes


def test_every_http_endpoint_of_the_services_is_documented_and_nothing_else():
    documented = {}
    for path, item in OPENAPI["paths"].items():
        for method, operation in item.items():
            if method in ("get", "post", "put", "delete", "patch"):
                for service in operation["x-nameko-services"]:
                    documented.setdefault(service, set()).add((method, path))
    offered = {service: http_routes(cls) for service, (cls, _) in SERVICES.items()}
    assert documented == offered


def test_the_reference_names_every_rpc_method_event_and_endpoint():
    reference = (DOCS / "reference.md").read_text(encoding="utf-8")
    for method in specs.RPC:
        assert f"`{method}(" in reference, method
    for event in specs.EVENTS:
        assert event in reference, event
    for path in OPENAPI["paths"]:
        assert f"`{path}`" in reference or f" {path}`" in reference, path
