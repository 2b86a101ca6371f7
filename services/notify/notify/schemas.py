"""Request and event schemas of the notify service (marshmallow 4)."""
from marshmallow import EXCLUDE, Schema, ValidationError, fields, post_load, validate, validates_schema

from notify.domain.model import CHANNELS, MESSAGE_KINDS
from portal_shared.phones import normalise_vn_mobile
from portal_shared.validation import BoundedDict, Text

_email = validate.Email()


class SendNotificationSchema(Schema):
    channel = fields.String(required=True, validate=validate.OneOf(CHANNELS))
    recipient = Text(required=True, min_length=1, max_length=254)
    template = fields.String(required=True, validate=validate.OneOf(MESSAGE_KINDS))
    params = BoundedDict(keys=fields.String(), load_default=dict, allow_none=True, max_bytes=8 * 1024, max_depth=3)
    reference = Text(load_default=None, allow_none=True, max_length=64)

    @validates_schema
    def _recipient(self, data, **kwargs):
        channel, recipient = data.get("channel"), data.get("recipient")
        if recipient is None or channel not in CHANNELS:
            return
        if channel == "sms" and normalise_vn_mobile(recipient) is None:
            raise ValidationError("must be a Vietnamese mobile number (0xxxxxxxxx or +84xxxxxxxxx)", field_name="recipient")
        if channel == "email":
            try:
                _email(recipient.strip())
            except ValidationError:
                raise ValidationError("must be an e-mail address", field_name="recipient") from None

    @post_load
    def _normalise(self, data, **kwargs):
        data["params"] = data.get("params") or {}
        if data["channel"] == "sms":
            data["recipient"] = normalise_vn_mobile(data["recipient"])
        else:
            data["recipient"] = data["recipient"].strip()
        if data.get("reference") is None:
            data["reference"] = data["params"].get("dossier_code")
        return data


class ReferenceSchema(Schema):
    reference = Text(required=True, min_length=1, max_length=64)


class ApplicantContactSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    full_name = fields.String(load_default=None, allow_none=True)
    phone = fields.String(load_default=None, allow_none=True)
    email = fields.String(load_default=None, allow_none=True)


class DossierStatusChangedSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    event_id = fields.String(required=True)
    occurred_at = fields.String(load_default=None, allow_none=True)
    dossier_code = fields.String(required=True)
    procedure_code = fields.String(load_default=None, allow_none=True)
    procedure_name = fields.String(load_default=None, allow_none=True)
    agency_code = fields.String(load_default=None, allow_none=True)
    old_status = fields.String(load_default=None, allow_none=True)
    new_status = fields.String(required=True)
    status_code = fields.Integer(load_default=None, allow_none=True)
    fee_amount = fields.Integer(load_default=None, allow_none=True)
    due_at = fields.String(load_default=None, allow_none=True)
    applicant = fields.Nested(ApplicantContactSchema, load_default=dict)
    note = fields.String(load_default=None, allow_none=True)


class PaymentEventSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    event_id = fields.String(required=True)
    occurred_at = fields.String(load_default=None, allow_none=True)
    txn_ref = fields.String(load_default=None, allow_none=True)
    dossier_code = fields.String(required=True)
    amount = fields.Integer(load_default=None, allow_none=True)
    gateway = fields.String(load_default=None, allow_none=True)
    gateway_txn_no = fields.String(load_default=None, allow_none=True)
    paid_at = fields.String(load_default=None, allow_none=True)
