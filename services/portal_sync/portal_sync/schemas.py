"""Schemas of the events portal_sync consumes (marshmallow 4); unknown keys are ignored."""
from marshmallow import Schema, fields, validate

CODE = validate.Length(min=1, max=32)


class StatusChangedSchema(Schema):
    event_id = fields.String(required=True, validate=validate.Length(min=1, max=64))
    dossier_code = fields.String(required=True, validate=CODE)
    new_status = fields.String(load_default=None)

    class Meta:
        unknown = "exclude"


class PaymentEventSchema(Schema):
    event_id = fields.String(required=True, validate=validate.Length(min=1, max=64))
    dossier_code = fields.String(required=True, validate=CODE)
    txn_ref = fields.String(required=True, validate=validate.Length(min=1, max=64))
    amount = fields.Integer(required=True, strict=True, validate=validate.Range(min=0))
    gateway = fields.String(load_default="", validate=validate.Length(max=32))
    paid_at = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=40))

    class Meta:
        unknown = "exclude"
