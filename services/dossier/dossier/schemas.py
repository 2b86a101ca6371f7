"""Request and response schemas of the dossier RPC interface (marshmallow 4)."""
from marshmallow import Schema, ValidationError, fields, post_load, validate, validates, validates_schema

from dossier.domain.model import ACTIONS, Status
from portal_shared.phones import normalise_vn_mobile
from portal_shared.timeutil import isoformat
from portal_shared.validation import BoundedDict, CitizenId, EmailAddress, Text, page_limit, page_offset

FORM_DATA_MAX_BYTES = 64 * 1024
MAX_CODES_PER_READ = 100  # get_dossiers: one delivery batch of portal_sync fits in one call


def dossier_code(**kwargs):
    """A dossier code as every request takes it."""
    return Text(min_length=1, max_length=32, **kwargs)


class ApplicantSchema(Schema):
    full_name = Text(required=True, min_length=1, max_length=255)
    id_number = CitizenId(required=True)
    phone = Text(load_default=None, allow_none=True, max_length=32)
    email = EmailAddress(load_default=None, allow_none=True)
    address = Text(load_default=None, allow_none=True, max_length=500)

    @validates("full_name")
    def _full_name(self, value, **kwargs):
        if not value.strip():
            raise ValidationError("must not be blank")

    @validates("phone")
    def _phone(self, value, **kwargs):
        if value is not None and normalise_vn_mobile(value) is None:
            raise ValidationError("must be a Vietnamese mobile number (0xxxxxxxxx or +84xxxxxxxxx)")

    @validates_schema
    def _contact(self, data, **kwargs):
        if not data.get("phone") and not data.get("email"):
            raise ValidationError("give at least one of phone and email", field_name="phone")

    @post_load
    def _normalise(self, data, **kwargs):
        data["full_name"] = data["full_name"].strip()
        if data.get("phone"):
            data["phone"] = normalise_vn_mobile(data["phone"])
        return data


class SubmitDossierSchema(Schema):
    procedure_code = Text(required=True, min_length=1, max_length=64)
    applicant = fields.Nested(ApplicantSchema, required=True)
    form_data = BoundedDict(keys=fields.String(), load_default=dict, allow_none=True, max_bytes=FORM_DATA_MAX_BYTES)


class ActOnDossierSchema(Schema):
    code = dossier_code(required=True)
    action = fields.String(required=True, validate=validate.OneOf(ACTIONS))
    actor = Text(required=True, min_length=1, max_length=128)
    note = Text(load_default=None, allow_none=True, max_length=2000)


class DossierCodeSchema(Schema):
    code = dossier_code(required=True)


class DossierCodesSchema(Schema):
    codes = fields.List(dossier_code(), required=True, validate=validate.Length(min=1, max=MAX_CODES_PER_READ))


class ListDossiersSchema(Schema):
    applicant_id_number = CitizenId(load_default=None, allow_none=True)
    status = fields.String(load_default=None, allow_none=True, validate=validate.OneOf([s.value for s in Status]))
    agency_code = Text(load_default=None, allow_none=True, max_length=64)
    limit = page_limit()
    offset = page_offset()


class StatsSchema(Schema):
    agency_code = Text(load_default=None, allow_none=True, max_length=64)
    since = fields.AwareDateTime(load_default=None, allow_none=True, default_timezone=None)
    until = fields.AwareDateTime(load_default=None, allow_none=True, default_timezone=None)

    @validates_schema
    def _range(self, data, **kwargs):
        if data.get("since") and data.get("until") and data["since"] > data["until"]:
            raise ValidationError("must not be after until", field_name="since")


class PaymentSucceededSchema(Schema):
    event_id = Text(required=True, max_length=64)
    dossier_code = Text(required=True, max_length=32)
    txn_ref = Text(load_default=None, allow_none=True, max_length=32)
    amount = fields.Integer(load_default=None, allow_none=True)
    occurred_at = fields.String(load_default=None)

    class Meta:
        unknown = "exclude"


def dump_dossier(dossier):
    """The contract's Dossier representation."""
    return {
        "code": dossier.code,
        "procedure_code": dossier.procedure.code,
        "procedure_name": dossier.procedure.name,
        "agency_code": dossier.procedure.agency_code,
        "status": dossier.status.value,
        "status_code": dossier.status.code,
        "fee_amount": dossier.procedure.fee,
        "fee_paid": dossier.fee_paid,
        "applicant": {
            "full_name": dossier.applicant.full_name,
            "id_number": dossier.applicant.id_number,
            "phone": dossier.applicant.phone,
            "email": dossier.applicant.email,
            "address": dossier.applicant.address,
        },
        "form_data": dossier.form_data,
        "submitted_at": isoformat(dossier.submitted_at),
        "due_at": isoformat(dossier.due_at),
        "history": [
            {"status": h.status.value, "at": isoformat(h.at), "actor": h.actor, "note": h.note} for h in dossier.history
        ],
    }
