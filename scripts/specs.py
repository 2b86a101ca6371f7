"""Generate docs/asyncapi.yaml and docs/openapi.yaml from the services' own code.

    .venv/bin/python scripts/specs.py            # rewrite both documents
    .venv/bin/python scripts/specs.py --check    # exit 1 if they are out of date

The request schemas of the RPC methods are the marshmallow schemas the services
load their arguments with, converted field by field (names, required, nullable,
types, enums, lengths, patterns, ranges, defaults); a method without a schema is
described from its signature and ``EXTRA_ARGUMENTS`` below. Results, events and
HTTP bodies are written here once, in JSON Schema, and tests/docs checks them
against what the services really produce. A new service: add it to ``RPC``,
``EVENTS`` and ``HTTP_SERVICES``.
"""
import inspect
import sys
import warnings
from pathlib import Path

import yaml
from marshmallow import fields, validate

warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")
REPO = Path(__file__).resolve().parents[1]
ASYNCAPI = REPO / "docs" / "asyncapi.yaml"
OPENAPI = REPO / "docs" / "openapi.yaml"
VERSION = "1.0.0"

ISO_TIME = {"type": "string", "format": "date-time", "description": "ISO 8601 with offset"}
NULLABLE_TIME = {"type": ["string", "null"], "format": "date-time", "description": "ISO 8601 with offset"}


# --- marshmallow → JSON Schema ---------------------------------------------------

def field_schema(field):
    """The JSON Schema of one marshmallow field (its validators included)."""
    if isinstance(field, fields.Nested):
        schema = schema_of(field.schema)
    elif isinstance(field, (fields.AwareDateTime, fields.DateTime)):
        schema = {"type": "string", "format": "date-time"}
    elif isinstance(field, fields.Email):
        schema = {"type": "string", "format": "email"}
    elif isinstance(field, fields.Url):
        schema = {"type": "string", "format": "uri"}
    elif isinstance(field, fields.String):
        schema = {"type": "string"}
    elif isinstance(field, fields.Integer):
        schema = {"type": "integer"}
    elif isinstance(field, fields.Number):
        schema = {"type": "number"}
    elif isinstance(field, fields.Boolean):
        schema = {"type": "boolean"}
    elif isinstance(field, fields.Dict):
        schema = {"type": "object"}
    elif isinstance(field, fields.List):
        schema = {"type": "array", "items": field_schema(field.inner)}
    else:
        raise TypeError(f"no JSON Schema for marshmallow field {type(field).__name__}")
    for validator in field.validators:
        if isinstance(validator, validate.Length):
            if validator.min is not None:
                schema["minLength"] = validator.min
            if validator.max is not None:
                schema["maxLength"] = validator.max
        elif isinstance(validator, validate.OneOf):
            schema["enum"] = list(validator.choices)
        elif isinstance(validator, validate.Regexp):
            schema["pattern"] = validator.regex.pattern
        elif isinstance(validator, validate.Range):
            if validator.min is not None:
                schema["minimum"] = validator.min
            if validator.max is not None:
                schema["maximum"] = validator.max
        elif isinstance(validator, validate.Email):
            schema["format"] = "email"
        elif isinstance(validator, validate.URL):
            schema["format"] = "uri"
        else:
            raise TypeError(f"no JSON Schema for validator {type(validator).__name__}")
    if field.allow_none:
        schema["type"] = [schema["type"], "null"] if isinstance(schema["type"], str) else schema["type"]
        if "enum" in schema:
            schema["enum"] = schema["enum"] + [None]
    default = field.load_default
    if not callable(default) and default is not None and not _is_missing(default):
        schema["default"] = default
    description = field.metadata.get("description")
    if description:
        schema["description"] = description
    return schema


def _is_missing(value):
    from marshmallow.utils import missing

    return value is missing


def schema_of(schema, extra=None):
    """An object schema from a marshmallow schema (class or instance)."""
    instance = schema() if isinstance(schema, type) else schema
    properties, required = {}, []
    for name, field in instance.fields.items():
        properties[name] = field_schema(field)
        if field.required:
            required.append(name)
    for name, rule in (extra or {}).items():
        properties[name] = {**properties[name], **rule}
    out = {"type": "object", "properties": properties}
    if required:
        out["required"] = required
    return out


# --- what the services offer --------------------------------------------------------

def _imports():
    from dossier import schemas as dossier_schemas
    from dossier.service import DossierService
    from notify import schemas as notify_schemas
    from notify.service import NotifyService
    from payment import schemas as payment_schemas
    from payment.service import PaymentService
    from portal_sync import schemas as portal_sync_schemas
    from portal_sync.service import PortalSyncService

    return {
        "dossier": (DossierService, dossier_schemas),
        "payment": (PaymentService, payment_schemas),
        "notify": (NotifyService, notify_schemas),
        "portal_sync": (PortalSyncService, portal_sync_schemas),
    }


# Constraints a schema checks in a @validates method, which the converter cannot see.
EXTRA_RULES = {
    "ApplicantSchema": {
        "id_number": {"pattern": r"^\d{12}$", "description": "12-digit citizen ID number"},
        "phone": {"description": "Vietnamese mobile, 0xxxxxxxxx or +84xxxxxxxxx; stored as 0xxxxxxxxx. "
                                 "At least one of phone and email."},
    },
    "StartPaymentSchema": {"client_ip": {"description": "the citizen's IPv4 or IPv6 address"}},
    "SendNotificationSchema": {
        "recipient": {"description": "a Vietnamese mobile number (sms) or an e-mail address (email)"},
    },
}

# Arguments of methods that have no request schema: {method: {argument: JSON Schema}}.
EXTRA_ARGUMENTS = {
    "get_dossier": {"code": {"type": "string", "description": "the dossier's code"}},
    "get_notifications": {"reference": {"type": "string", "description": "the dossier code for automatic messages"}},
    "sync_stats": {},
}

APPLICANT_OUT = {
    "type": "object", "additionalProperties": False,
    "required": ["full_name", "id_number", "phone", "email", "address"],
    "properties": {
        "full_name": {"type": "string"}, "id_number": {"type": "string", "pattern": r"^\d{12}$"},
        "phone": {"type": ["string", "null"], "pattern": r"^0\d{9}$"},
        "email": {"type": ["string", "null"]}, "address": {"type": ["string", "null"]},
    },
}

STATUSES = ["submitted", "accepted", "not_accepted", "processing", "supplement_requested", "payment_requested",
            "withdrawn", "stopped", "processed", "returned"]
PAYMENT_STATUSES = ["pending", "succeeded", "failed", "expired", "refund_pending", "refunded"]
NOTIFICATION_STATUSES = ["created", "sending", "sent", "delivered", "temporary_failure", "permanent_failure",
                         "technical_failure"]


def _object(required, properties, additional=False):
    return {"type": "object", "additionalProperties": additional, "required": required, "properties": properties}


COMPONENT_SCHEMAS = {
    "Dossier": _object(
        ["code", "procedure_code", "procedure_name", "agency_code", "status", "status_code", "fee_amount",
         "fee_paid", "applicant", "form_data", "submitted_at", "due_at", "history"],
        {
            "code": {"type": "string", "description": "unique, human-readable: agency-yymmdd-XXXXXX"},
            "procedure_code": {"type": "string"}, "procedure_name": {"type": "string"},
            "agency_code": {"type": "string"},
            "status": {"type": "string", "enum": STATUSES},
            "status_code": {"type": "integer", "minimum": 1, "maximum": 10,
                            "description": "the national one-stop-shop code (reference 2.1)"},
            "fee_amount": {"type": "integer", "minimum": 0, "description": "VND"},
            "fee_paid": {"type": "boolean"},
            "applicant": APPLICANT_OUT,
            "form_data": {"type": "object"},
            "submitted_at": ISO_TIME, "due_at": NULLABLE_TIME,
            "history": {"type": "array", "items": _object(
                ["status", "at", "actor", "note"],
                {"status": {"type": "string", "enum": STATUSES}, "at": ISO_TIME,
                 "actor": {"type": ["string", "null"]}, "note": {"type": ["string", "null"]}})},
        }),
    "DossierList": _object(["items", "total"], {
        "items": {"type": "array", "items": {"$ref": "#/components/schemas/Dossier"}},
        "total": {"type": "integer", "minimum": 0}}),
    "DossierStats": _object(
        ["by_status", "finished", "on_time", "late", "on_time_rate", "overdue_open"],
        {"by_status": {"type": "object", "additionalProperties": {"type": "integer"}},
         "finished": {"type": "integer"}, "on_time": {"type": "integer"}, "late": {"type": "integer"},
         "on_time_rate": {"type": "number", "minimum": 0, "maximum": 1,
                          "description": "on_time / (on_time + late + overdue_open)"},
         "overdue_open": {"type": "integer"}}, additional=True),
    "Payment": _object(
        ["txn_ref", "dossier_code", "amount", "gateway", "status", "pay_url", "gateway_txn_no", "created_at",
         "expires_at", "paid_at"],
        {"txn_ref": {"type": "string", "description": "sent as VNPay vnp_TxnRef and MoMo orderId"},
         "dossier_code": {"type": "string"}, "amount": {"type": "integer", "minimum": 0, "description": "VND"},
         "gateway": {"type": "string", "enum": ["vnpay", "momo"]},
         "status": {"type": "string", "enum": PAYMENT_STATUSES},
         "pay_url": {"type": ["string", "null"]},
         "gateway_txn_no": {"type": ["string", "null"],
                            "description": "VNPay vnp_TransactionNo or MoMo transId"},
         "created_at": ISO_TIME, "expires_at": NULLABLE_TIME, "paid_at": NULLABLE_TIME,
         "refund_error": {"type": "string", "description": "only while a refund is refused (refund_pending)"}}),
    "PaymentList": {"type": "array", "items": {"$ref": "#/components/schemas/Payment"}},
    "ReconciliationReport": {
        "type": "object",
        "required": ["gateway", "rows", "matched", "fixed", "missing_locally", "missing_at_gateway",
                     "amount_mismatch", "status_mismatch", "malformed"],
        "properties": {
            "gateway": {"type": "string", "enum": ["vnpay", "momo"]},
            "rows": {"type": "integer"}, "matched": {"type": "integer"},
            **{key: {"type": "array", "items": {"type": "object", "required": ["txn_ref"]}}
               for key in ("fixed", "missing_locally", "missing_at_gateway", "amount_mismatch",
                           "status_mismatch", "unconfirmed")},
            "malformed": {"type": "array", "items": {"type": "object", "required": ["line", "reason"]}},
        },
    },
    "Notification": _object(
        ["id", "channel", "recipient", "template", "reference", "status", "provider", "attempts", "created_at",
         "sent_at"],
        {"id": {"type": ["integer", "string"]}, "channel": {"type": "string", "enum": ["sms", "email"]},
         "recipient": {"type": "string"}, "template": {"type": "string"},
         "reference": {"type": ["string", "null"]},
         "status": {"type": "string", "enum": NOTIFICATION_STATUSES},
         "provider": {"type": ["string", "null"], "enum": ["esms", "speedsms", "smtp", None]},
         "attempts": {"type": "integer", "minimum": 0},
         "created_at": ISO_TIME, "sent_at": NULLABLE_TIME}),
    "NotificationList": {"type": "array", "items": {"$ref": "#/components/schemas/Notification"}},
    "SyncStats": _object(["synced", "pending", "parked", "oldest_pending_seconds"], {
        "synced": {"type": "integer", "minimum": 0}, "pending": {"type": "integer", "minimum": 0},
        "parked": {"type": "integer", "minimum": 0},
        "oldest_pending_seconds": {"type": "number", "minimum": 0,
                                   "description": "age of the oldest change not yet at the national portal"}}),
    "RemoteError": _object(["exc_type", "exc_path", "exc_args", "value"], {
        "exc_type": {"type": "string"}, "exc_path": {"type": "string"},
        "exc_args": {"type": "array"}, "value": {"type": "string"}}, additional=True),
}

# method → (service, request schema name or None, result schema, expected errors)
RPC = {
    "submit_dossier": ("dossier", "SubmitDossierSchema", "Dossier",
                       ["ValidationError", "UnknownProcedure"]),
    "get_dossier": ("dossier", None, "Dossier", ["DossierNotFound"]),
    "list_dossiers": ("dossier", "ListDossiersSchema", "DossierList", ["ValidationError"]),
    "act_on_dossier": ("dossier", "ActOnDossierSchema", "Dossier",
                       ["ValidationError", "DossierNotFound", "InvalidTransition"]),
    "dossier_stats": ("dossier", "StatsSchema", "DossierStats", ["ValidationError"]),
    "start_payment": ("payment", "StartPaymentSchema", "Payment",
                      ["ValidationError", "NoPaymentDue", "AlreadyPaid", "GatewayUnavailable"]),
    "get_payment": ("payment", "TxnRefSchema", "Payment", ["PaymentNotFound"]),
    "list_payments": ("payment", "DossierCodeSchema", "PaymentList", ["ValidationError"]),
    "reconcile": ("payment", "ReconcileSchema", "ReconciliationReport", ["ValidationError"]),
    "send_notification": ("notify", "SendNotificationSchema", "Notification", ["ValidationError"]),
    "get_notifications": ("notify", None, "NotificationList", []),
    "sync_stats": ("portal_sync", None, "SyncStats", []),
}
# Methods between services only (role ``service``), left out of the documents on purpose: no client of the
# platform may call them, and they may change with their one caller. method → service
INTERNAL_RPC = {
    "get_dossiers": "dossier",  # portal_sync's delivery batches
}
# Every call may also be refused for its caller (CONTRACT section 5) or fail unexpectedly (a
# generic error naming a correlation id, never the exception's text).
CALLER_ERRORS = ["Unauthorized", "Forbidden", "InternalError"]

DOSSIER_EVENT = _object(
    ["event_id", "occurred_at", "dossier_code", "procedure_code", "procedure_name", "agency_code", "old_status",
     "new_status", "status_code", "fee_amount", "due_at", "applicant", "note"],
    {"event_id": {"type": "string", "format": "uuid"}, "occurred_at": ISO_TIME,
     "dossier_code": {"type": "string"}, "procedure_code": {"type": "string"},
     "procedure_name": {"type": "string"}, "agency_code": {"type": "string"},
     "old_status": {"type": ["string", "null"], "enum": STATUSES + [None]},
     "new_status": {"type": "string", "enum": STATUSES},
     "status_code": {"type": "integer", "minimum": 1, "maximum": 10},
     "fee_amount": {"type": "integer", "minimum": 0}, "due_at": NULLABLE_TIME,
     "applicant": _object(["full_name", "phone", "email"], {
         "full_name": {"type": "string"}, "phone": {"type": ["string", "null"]},
         "email": {"type": ["string", "null"]}}),
     "note": {"type": ["string", "null"]}})


def payment_event(with_reason=False):
    schema = _object(
        ["event_id", "occurred_at", "txn_ref", "dossier_code", "amount", "gateway", "gateway_txn_no", "paid_at"],
        {"event_id": {"type": "string", "format": "uuid"}, "occurred_at": ISO_TIME,
         "txn_ref": {"type": "string"}, "dossier_code": {"type": "string"},
         "amount": {"type": "integer", "minimum": 0}, "gateway": {"type": "string", "enum": ["vnpay", "momo"]},
         "gateway_txn_no": {"type": ["string", "null"]}, "paid_at": NULLABLE_TIME})
    if with_reason:
        schema["required"] = schema["required"] + ["reason"]
        schema["properties"]["reason"] = {"type": ["string", "null"]}
    return schema


# event → (source service, payload schema, consumers "service.handler", summary)
EVENTS = {
    "dossier_status_changed": ("dossier", DOSSIER_EVENT,
                               ["payment.on_dossier_status_changed", "notify.on_dossier_status_changed",
                                "portal_sync.on_dossier_status_changed"],
                               "One per status change, in order per dossier, never lost once committed."),
    "payment_succeeded": ("payment", payment_event(), ["dossier.on_payment_succeeded", "notify.on_payment_succeeded",
                                                           "portal_sync.on_payment_succeeded"],
                          "Exactly one per successful payment."),
    "payment_failed": ("payment", payment_event(with_reason=True), [], "A payment attempt failed."),
    "payment_refunded": ("payment", payment_event(), ["notify.on_payment_refunded", "portal_sync.on_payment_refunded"],
                         "A payment was refunded."),
}


def rpc_arguments(method, service_class, schemas_module):
    """``(kwargs schema, parameter order)`` of one RPC method."""
    _, schema_name, _, _ = RPC[method]
    parameters = [name for name in inspect.signature(getattr(service_class, method)).parameters if name != "self"]
    if schema_name:
        schema_class = getattr(schemas_module, schema_name)
        kwargs = schema_of(schema_class, EXTRA_RULES.get(schema_name))
        nested = {name: field.schema.__class__.__name__ for name, field in schema_class().fields.items()
                  if isinstance(field, fields.Nested)}
        for name, class_name in nested.items():
            for rule_field, rule in EXTRA_RULES.get(class_name, {}).items():
                target = kwargs["properties"][name]["properties"][rule_field]
                target.update(rule)
    else:
        kwargs = {"type": "object", "properties": dict(EXTRA_ARGUMENTS[method]), "required": [
            name for name, parameter in inspect.signature(getattr(service_class, method)).parameters.items()
            if name != "self" and parameter.default is inspect.Parameter.empty]}
    kwargs["additionalProperties"] = False
    return kwargs, parameters


def build_asyncapi():
    services = _imports()
    channels, operations, messages = {}, {}, {}
    channels["rpcReply"] = {
        "address": None,
        "description": "The caller's exclusive reply queue (`rpc.reply-<caller>-<uuid>`), named by the request's "
                       "`reply_to` property; the reply carries the request's `correlation_id`.",
        "messages": {},
    }
    for method, (service, _, result, errors) in RPC.items():
        service_class, schemas_module = services[service]
        kwargs, order = rpc_arguments(method, service_class, schemas_module)
        name = f"{service}.{method}"
        request = f"{name}.request"
        reply = f"{name}.reply"
        messages[request] = {
            "name": request, "title": f"{method} call", "contentType": "application/json",
            "correlationId": {"location": "$message.header#/correlation_id"},
            "payload": {
                "type": "object", "required": ["args", "kwargs"], "additionalProperties": False,
                "properties": {
                    "args": {"type": "array", "description": "positional arguments, in the order "
                             + ", ".join(order) + " (the rest by name in kwargs)", "maxItems": len(order)},
                    "kwargs": kwargs,
                },
                "x-parameter-order": order,
            },
        }
        messages[reply] = {
            "name": reply, "title": f"{method} result", "contentType": "application/json",
            "correlationId": {"location": "$message.header#/correlation_id"},
            "payload": {
                "type": "object", "required": ["result", "error"],
                "properties": {
                    "result": {"oneOf": [{"$ref": f"#/components/schemas/{result}"}, {"type": "null"}]},
                    "error": {"oneOf": [{"type": "null"}, {
                        "allOf": [{"$ref": "#/components/schemas/RemoteError"}],
                        "properties": {"exc_type": {"type": "string", "enum": errors + CALLER_ERRORS + ["MethodNotFound",
                                                                                            "MalformedRequest"]}}}]},
                },
            },
        }
        channels[name] = {
            "address": name,
            "title": f"RPC {name}",
            "messages": {"request": {"$ref": f"#/components/messages/{request}"}},
            "bindings": {"amqp": {"is": "routingKey", "bindingVersion": "0.3.0",
                                  "exchange": {"name": "nameko-rpc", "type": "topic", "durable": True,
                                               "autoDelete": False, "vhost": "/"}}},
        }
        channels["rpcReply"]["messages"][reply.replace(".", "_")] = {"$ref": f"#/components/messages/{reply}"}
        operations[f"{service}_{method}"] = {
            "action": "receive",
            "title": f"{service}.{method}",
            "summary": f"RPC method {method} of the {service} service (queue rpc-{service}).",
            "channel": {"$ref": f"#/channels/{name}"},
            "messages": [{"$ref": f"#/channels/{name}/messages/request"}],
            "reply": {
                "address": {"location": "$message.header#/reply_to",
                            "description": "the request's AMQP reply_to property"},
                "channel": {"$ref": "#/channels/rpcReply"},
                "messages": [{"$ref": f"#/channels/rpcReply/messages/{reply.replace('.', '_')}"}],
            },
        }
    schemas = dict(COMPONENT_SCHEMAS)
    for event, (source, payload, consumers, summary) in EVENTS.items():
        message = f"{source}.{event}"
        schema_name = "".join(part.title() for part in event.split("_")) + "Event"
        schemas[schema_name] = payload
        messages[message] = {
            "name": event, "title": event, "summary": summary, "contentType": "application/json",
            "payload": {"$ref": f"#/components/schemas/{schema_name}"},
            "bindings": {"amqp": {"messageType": event, "bindingVersion": "0.3.0"}},
        }
        channel = f"{source}.events.{event}"
        channels[channel] = {
            "address": event,
            "title": f"{event} on {source}.events",
            "messages": {event: {"$ref": f"#/components/messages/{message}"}},
            "bindings": {"amqp": {"is": "routingKey", "bindingVersion": "0.3.0",
                                  "exchange": {"name": f"{source}.events", "type": "topic", "durable": True,
                                               "autoDelete": False, "vhost": "/"}}},
        }
        operations[f"{source}_dispatch_{event}"] = {
            "action": "send", "title": f"{source} dispatches {event}",
            "summary": "Published from the transactional outbox with publisher confirms (at least once).",
            "channel": {"$ref": f"#/channels/{channel}"},
            "messages": [{"$ref": f"#/channels/{channel}/messages/{event}"}],
            "bindings": {"amqp": {"deliveryMode": 2, "bindingVersion": "0.3.0"}},
        }
        for consumer in consumers:
            service, handler = consumer.split(".")
            operations[f"{service}_{handler}"] = {
                "action": "receive", "title": f"{service}.{handler}",
                "summary": f"Queue evt-{source}-{event}--{service}.{handler}: competing consumers, deduplicated "
                           "by event_id, retried through .retry and parked in .dlq.",
                "channel": {"$ref": f"#/channels/{channel}"},
                "messages": [{"$ref": f"#/channels/{channel}/messages/{event}"}],
                "bindings": {"amqp": {"ack": True, "bindingVersion": "0.3.0"}},
            }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Public-service portal backend: RPC and events",
            "version": VERSION,
            "description": "Everything the dossier, payment, notify and portal_sync services exchange over RabbitMQ. "
                           "RPC follows Nameko's AMQP RPC: a request published on the `nameko-rpc` topic "
                           "exchange with routing key `<service>.<method>`, body `{\"args\": [...], "
                           "\"kwargs\": {...}}`, `reply_to` and `correlation_id` properties; the reply "
                           "`{\"result\": ..., \"error\": ...}` goes to the caller's reply queue. Events are "
                           "published on the topic exchange `<service>.events` with the event type as "
                           "routing key, persistent, JSON. Reference: docs/reference.md. Generated by "
                           "scripts/specs.py from the services' marshmallow schemas.",
        },
        "defaultContentType": "application/json",
        "servers": {
            "broker": {"host": "localhost:5672", "protocol": "amqp", "protocolVersion": "0.9.1",
                       "description": "AMQP_URI of each service"},
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }


# --- HTTP ---------------------------------------------------------------------------

HTTP_SERVICES = {"payment": 8000, "notify": 8001, "dossier": 8002, "portal_sync": 8003}
JSON_MESSAGE = {"type": "object", "properties": {"message": {"type": "string"}}}
JSON_ERROR = {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}
VNPAY_IPN_PARAMETERS = ["vnp_TmnCode", "vnp_Amount", "vnp_BankCode", "vnp_BankTranNo", "vnp_CardType",
                        "vnp_OrderInfo", "vnp_PayDate", "vnp_ResponseCode", "vnp_TransactionNo",
                        "vnp_TransactionStatus", "vnp_TxnRef", "vnp_SecureHash", "vnp_SecureHashType"]
MOMO_IPN_FIELDS = {"partnerCode": "string", "orderId": "string", "requestId": "string", "amount": "integer",
                   "orderInfo": "string", "orderType": "string", "transId": "integer", "resultCode": "integer",
                   "message": "string", "payType": "string", "responseTime": "integer", "extraData": "string",
                   "signature": "string"}


def servers_of(*services):
    return [{"url": f"http://localhost:{HTTP_SERVICES[s]}", "description": f"{s} ({s.upper()}_HTTP_ADDRESS)"}
            for s in services]


def build_openapi():
    health = {
        "/healthz": ("healthz", "The process is alive.", {
            "200": {"description": "alive", "content": {"application/json": {"schema": {
                "type": "object", "required": ["status"], "properties": {"status": {"const": "ok"}}}}}}}),
        "/readyz": ("readyz", "The database and the broker are reachable.", {
            "200": {"description": "ready", "content": {"application/json": {"schema": {
                "$ref": "#/components/schemas/Readiness"}}}},
            "503": {"description": "not ready: the database or the broker is unreachable",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Readiness"}}}}}),
        "/metrics": ("metrics", "Prometheus text format: worker calls and durations per entrypoint, outbox backlog.",
                     {"200": {"description": "metrics", "content": {"text/plain": {"schema": {"type": "string"}}}}}),
    }
    paths = {}
    for path, (operation, summary, responses) in health.items():
        paths[path] = {"servers": servers_of(*HTTP_SERVICES), "get": {
            "operationId": operation, "summary": summary, "tags": ["health"], "responses": responses,
            "x-nameko-services": list(HTTP_SERVICES)}}
    paths["/callbacks/vnpay/ipn"] = {"servers": servers_of("payment"), "get": {
        "operationId": "vnpayIpn", "tags": ["payment"], "x-nameko-services": ["payment"],
        "summary": "VNPay IPN (server to server). Checked in VNPay's order: signature, order, amount, "
                   "not yet confirmed; a rejected IPN changes nothing. Idempotent.",
        "parameters": [{"name": name, "in": "query", "required": name not in ("vnp_SecureHashType", "vnp_BankTranNo",
                                                                              "vnp_CardType"),
                        "schema": {"type": "string", "maxLength": 512}} for name in VNPAY_IPN_PARAMETERS],
        "responses": {"200": {"description": "always HTTP 200; the verdict is RspCode", "content": {
            "application/json": {"schema": {"type": "object", "required": ["RspCode", "Message"], "properties": {
                "RspCode": {"type": "string", "enum": ["00", "01", "02", "04", "97", "99"],
                            "description": "00 confirmed, 01 order not found, 02 already confirmed, "
                                           "04 invalid amount, 97 invalid signature, 99 unknown error (retried)"},
                "Message": {"type": "string"}}}}}}},
    }}
    paths["/callbacks/momo/ipn"] = {"servers": servers_of("payment"), "post": {
        "operationId": "momoIpn", "tags": ["payment"], "x-nameko-services": ["payment"],
        "summary": "MoMo IPN: 204 when accepted (also a duplicate of an accepted one).",
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "required": [name for name in MOMO_IPN_FIELDS if name != "extraData"],
            "properties": {name: {"type": kind} for name, kind in MOMO_IPN_FIELDS.items()}}}}},
        "responses": {
            "204": {"description": "accepted"},
            "400": {"description": "bad signature or malformed body; nothing changed",
                    "content": {"application/json": {"schema": JSON_MESSAGE}}},
            "503": {"description": "temporary error; MoMo retries",
                    "content": {"application/json": {"schema": JSON_MESSAGE}}}}}}
    paths["/callbacks/esms/{token}"] = {"servers": servers_of("notify"), "post": {
        "operationId": "esmsReceipt", "tags": ["notify"], "x-nameko-services": ["notify"],
        "summary": "eSMS delivery receipt: moves a notification sent through eSMS, still sending or sent, to "
                   "delivered or permanent_failure.",
        "parameters": [{"name": "token", "in": "path", "required": True, "schema": {"type": "string"},
                        "description": "ESMS_CALLBACK_TOKEN (eSMS does not sign receipts); any other path is 404"}],
        "requestBody": {"required": True, "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/EsmsReceipt"}},
            "application/x-www-form-urlencoded": {"schema": {"$ref": "#/components/schemas/EsmsReceipt"}}}},
        "responses": {
            "200": {"description": "received; the same answer for known and unknown messages (no existence oracle)",
                    "content": {"application/json": {"schema": {
                        "type": "object", "required": ["status"], "additionalProperties": False,
                        "properties": {"status": {"type": "string", "const": "received"}}}}}},
            "400": {"description": "malformed receipt (query string, bad encoding, missing SMSID or SendStatus)",
                    "content": {"application/json": {"schema": JSON_ERROR}}},
            "404": {"description": "wrong or missing path token", "content": {"application/json": {
                "schema": JSON_ERROR}}}}}}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Public-service portal backend: HTTP endpoints",
            "version": VERSION,
            "description": "The HTTP servers of the services: payment gateways' and SMS provider's callbacks, "
                           "and health/readiness/metrics on every service. Reference: docs/reference.md. "
                           "Generated by scripts/specs.py.",
        },
        "servers": servers_of(*HTTP_SERVICES),
        "tags": [{"name": "health"}, {"name": "payment"}, {"name": "notify"}],
        "paths": paths,
        "components": {"schemas": {
            "Readiness": {"type": "object", "required": ["status"], "properties": {
                "status": {"type": "string", "enum": ["ready", "not ready"]}},
                "additionalProperties": {"type": "string", "description": "one check's result, 'ok' when fine"}},
            "EsmsReceipt": {"type": "object", "required": ["SendStatus"], "properties": {
                "RequestId": {"type": "string"}, "SMSID": {"type": "string"}, "SendStatus": {"type": "string"},
                "SendFailed": {"type": "string"}, "SendSuccess": {"type": "string"}},
                "description": "RequestId (our notification id) or SMSID names the message."},
        }},
    }


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data):  # plain YAML, no &anchors for shared fragments
        return True


def render(document):
    return yaml.dump(document, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)


def main(argv):
    outputs = {ASYNCAPI: render(build_asyncapi()), OPENAPI: render(build_openapi())}
    if "--check" in argv:
        stale = [str(path.relative_to(REPO)) for path, text in outputs.items()
                 if not path.exists() or path.read_text(encoding="utf-8") != text]
        if stale:
            print("out of date (run scripts/specs.py):", ", ".join(stale))
            return 1
        return 0
    for path, text in outputs.items():
        path.write_text(text, encoding="utf-8")
        print("wrote", path.relative_to(REPO))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
