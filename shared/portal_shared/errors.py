"""Errors crossing the RPC boundary and request validation.

Nameko sends a raised exception to the caller as a ``RemoteError`` whose
``exc_type`` is the class name, so each class here is named as the contract
names it. ``load`` validates a request with a marshmallow schema and turns a
failure into one ``ValidationError`` naming every bad field.
"""
import functools
import json

import marshmallow


class PortalError(Exception):
    """Base of the errors a caller is expected to handle."""


class Unauthorized(PortalError):
    """A call without a valid caller token (missing, malformed, expired, badly signed)."""


class Forbidden(PortalError):
    """A valid caller without the right to this call or this object."""


class InternalError(PortalError):
    """What a caller sees of an unexpected failure: a correlation id, no internals."""


class ValidationError(PortalError):
    """A request that does not validate; ``fields`` maps each bad field to its messages."""

    def __init__(self, fields):
        self.fields = fields
        names = ", ".join(sorted(_flatten(fields)))
        super().__init__(f"invalid fields: {names}; details: {json.dumps(fields, ensure_ascii=False, sort_keys=True)}")


def _flatten(fields, prefix=""):
    for key, value in fields.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value and all(not isinstance(v, str) for v in value.values()):
            yield from _flatten(value, prefix=f"{name}.")
        else:
            yield name


@functools.cache
def _schema_instance(schema_class):
    return schema_class()


def load(schema, data):
    """Load ``data`` with a marshmallow schema (a class: one instance of it, made once and reused; building a
    schema deep-copies its fields, a few per cent of a service's CPU per call), raising our
    ``ValidationError``."""
    if isinstance(schema, type):
        schema = _schema_instance(schema)
    if data is None:
        data = {}
    try:
        return schema.load(data)
    except marshmallow.ValidationError as exc:
        messages = exc.messages if isinstance(exc.messages, dict) else {"_schema": exc.messages}
        raise ValidationError(messages) from None
