"""SQLAlchemy Core repositories of the payment service: aggregates in, aggregates out.

Only the units of work (``unit_of_work``) use them; the use cases and
reconciliation's fix step see them through a unit of work.
Locks are taken in one order: payment rows first, then the dossier's charge row.
"""
import sqlalchemy as sa

from payment.domain.model import Charge, ChargeStatus, Payment, Source, Status
from payment.orm import charges, payment_history, payments
from portal_shared.sqltypes import dialect_insert, on_postgresql

PAYMENT_FIELDS = ("status", "pay_url", "gateway_txn_no", "paid_at", "updated_at", "refund_reason", "refund_error",
                  "refund_attempts", "refunded_at")
CHARGE_FIELDS = ("amount", "status", "paid_txn_ref", "procedure_name", "agency_code", "source_event_id", "updated_at")


# The IPN's statements, built once (building a Core statement costs more CPU than running it):
# the payment and its charge locked in one row (``SqlPayments.get_for_update``), with or without a
# gateway condition; one changed payment and its one new history entry (``SqlPayments.save``).
CHARGE_COLUMNS = [column.label(f"charge_{column.name}") for column in charges.c]
_PAYMENT_AND_CHARGE = sa.select(payments, *CHARGE_COLUMNS) \
    .join_from(payments, charges, charges.c.dossier_code == payments.c.dossier_code) \
    .where(payments.c.txn_ref == sa.bindparam("txn_ref"))
PAYMENT_AND_CHARGE_FOR_UPDATE = {
    False: _PAYMENT_AND_CHARGE.with_for_update(of=[payments, charges]),
    True: _PAYMENT_AND_CHARGE.where(payments.c.gateway == sa.bindparam("gateway"))
    .with_for_update(of=[payments, charges]),
}
HISTORY_FIELDS = ("payment_id", "txn_ref", "old_status", "new_status", "source", "at", "evidence")
SAVE_ONE_PAYMENT = payment_history.insert().values(
    **{name: sa.bindparam(f"h_{name}") for name in HISTORY_FIELDS}
).add_cte(payments.update().where(payments.c.id == sa.bindparam("p_id")).values(
    **{name: sa.bindparam(f"p_{name}") for name in PAYMENT_FIELDS}).cte("changed_payment"))


def payment_from_row(row):
    values = row._mapping if hasattr(row, "_mapping") else row
    return Payment(
        id=values["id"], txn_ref=values["txn_ref"], dossier_code=values["dossier_code"], amount=int(values["amount"]),
        gateway=values["gateway"], status=Status(values["status"]), pay_url=values["pay_url"],
        gateway_txn_no=values["gateway_txn_no"], created_at=values["created_at"], expires_at=values["expires_at"],
        paid_at=values["paid_at"], updated_at=values["updated_at"], client_ip=values["client_ip"],
        refund_reason=values["refund_reason"], refund_error=values["refund_error"],
        refund_attempts=values["refund_attempts"] or 0, refunded_at=values["refunded_at"],
    )


def payment_values(payment, names=PAYMENT_FIELDS):
    values = {name: getattr(payment, name) for name in names}
    values["status"] = payment.status.value
    return values


def charge_from_row(row):
    values = row._mapping if hasattr(row, "_mapping") else row
    return Charge(
        dossier_code=values["dossier_code"], amount=int(values["amount"]), status=ChargeStatus(values["status"]),
        paid_txn_ref=values["paid_txn_ref"], procedure_name=values["procedure_name"],
        agency_code=values["agency_code"], source_event_id=values["source_event_id"],
        created_at=values["created_at"], updated_at=values["updated_at"],
    )


def jsonable(evidence):
    """Evidence as JSON can store it (datetimes and the like as text)."""
    if evidence is None:
        return None
    if isinstance(evidence, dict):
        return {str(key): jsonable(value) for key, value in evidence.items()}
    if isinstance(evidence, (list, tuple)):
        return [jsonable(value) for value in evidence]
    if isinstance(evidence, (str, int, float, bool)):
        return evidence
    return str(evidence)


def history_values(payment, entry):
    return {
        "payment_id": payment.id, "txn_ref": payment.txn_ref,
        "old_status": entry.old_status.value if entry.old_status is not None else None,
        "new_status": entry.new_status.value, "source": Source(entry.source).value, "at": entry.at,
        "evidence": jsonable(entry.evidence),
    }


class SqlPayments:
    def __init__(self, connection, charges_repository):
        self._connection = connection  # a Session or a Connection: both execute Core statements
        self._charges = charges_repository
        self.seen = []

    def _track(self, payment):
        if payment is not None:
            self.seen.append(payment)
        return payment

    def add(self, payment):
        values = {**payment_values(payment), "txn_ref": payment.txn_ref, "dossier_code": payment.dossier_code,
                  "amount": payment.amount, "gateway": payment.gateway, "created_at": payment.created_at,
                  "expires_at": payment.expires_at, "client_ip": payment.client_ip}
        payment.id = self._connection.execute(payments.insert().values(**values).returning(payments.c.id)).scalar_one()
        payment.changed = False
        return self._track(payment)

    def get(self, txn_ref):
        """The payment without a lock (a read), or None."""
        row = self._connection.execute(sa.select(payments).where(payments.c.txn_ref == txn_ref)).mappings().first()
        return payment_from_row(row) if row is not None else None

    def get_for_update(self, txn_ref, gateway=None, skip_locked=False, with_charge=True):
        """The payment with its row locked (and its charge's, after it), or None.

        ``skip_locked``: None also when another transaction holds the row.
        On PostgreSQL the payment and its charge come in one statement (``FOR UPDATE OF payments,
        charges`` locks them in that order); a payment without a charge row takes a second one.
        """
        statement = sa.select(payments).where(payments.c.txn_ref == txn_ref)
        if gateway is not None:
            statement = statement.where(payments.c.gateway == gateway)
        if with_charge and not skip_locked and on_postgresql(self._connection):
            row = self._connection.execute(PAYMENT_AND_CHARGE_FOR_UPDATE[gateway is not None],
                                           {"txn_ref": txn_ref, "gateway": gateway}).mappings().first()
            if row is not None:
                payment = payment_from_row(row)
                payment.charge = self._charges.track(charge_from_row(
                    {column.name: row[f"charge_{column.name}"] for column in charges.c}))
                return self._track(payment)
        row = self._connection.execute(statement.with_for_update(skip_locked=skip_locked)).mappings().first()
        if row is None:
            return None
        payment = payment_from_row(row)
        if with_charge:
            payment.charge = self._charges.get_for_update(payment.dossier_code)
        return self._track(payment)

    def get_many_for_update(self, ids):
        """Payments by id, in id order, their rows locked, each with its dossier's charge (locked after them)."""
        rows = self._connection.execute(
            sa.select(payments).where(payments.c.id.in_(list(ids))).order_by(payments.c.id).with_for_update()
        ).mappings().all()
        found = [payment_from_row(row) for row in rows]
        charges_by_dossier = self._charges.get_many_for_update({payment.dossier_code for payment in found})
        for payment in found:
            payment.charge = charges_by_dossier.get(payment.dossier_code)
        return [self._track(payment) for payment in found]

    def succeeded_for_update(self, dossier_code):
        rows = self._connection.execute(
            sa.select(payments).where(payments.c.dossier_code == dossier_code,
                                      payments.c.status == Status.succeeded.value)
            .order_by(payments.c.id).with_for_update()
        ).mappings().all()
        return [self._track(payment_from_row(row)) for row in rows]

    def find_reusable(self, dossier_code, gateway, amount, after):
        row = self._connection.execute(
            sa.select(payments).where(
                payments.c.dossier_code == dossier_code, payments.c.gateway == gateway,
                payments.c.status == Status.pending.value, payments.c.amount == amount,
                payments.c.pay_url.is_not(None), payments.c.expires_at > after,
            ).order_by(payments.c.id.desc()).limit(1)
        ).mappings().first()
        return payment_from_row(row) if row is not None else None

    def count_for_dossier(self, dossier_code):
        return self._connection.execute(
            sa.select(sa.func.count()).select_from(payments).where(payments.c.dossier_code == dossier_code)
        ).scalar_one()

    def for_dossier(self, dossier_code, limit=200):
        rows = self._connection.execute(
            sa.select(payments).where(payments.c.dossier_code == dossier_code).order_by(payments.c.id).limit(limit)
        ).mappings().all()
        return [payment_from_row(row) for row in rows]

    def txn_refs_in(self, status, limit):
        return self._connection.execute(
            sa.select(payments.c.txn_ref).where(payments.c.status == Status(status).value)
            .order_by(payments.c.id).limit(limit)
        ).scalars().all()

    def claim_refund_attempt(self, payment, previous, lease_cutoff):
        """Store the attempt ``payment.claim_refund_attempt`` took, only if no one else took it meanwhile."""
        return self._connection.execute(
            payments.update().where(
                payments.c.id == payment.id, payments.c.status == Status.refund_pending.value,
                sa.func.coalesce(payments.c.refund_attempts, 0) == previous,
                sa.or_(payments.c.refund_attempts.is_(None), payments.c.refund_attempts == 0,
                       payments.c.refund_error.is_not(None), payments.c.updated_at <= lease_cutoff),
            ).values(refund_attempts=payment.refund_attempts, refund_error=None, updated_at=payment.updated_at)
        ).rowcount == 1

    def save(self, payments_to_save):
        """Write the changed payments and their new history entries (a few statements for many payments).

        One changed payment with one new history entry (an IPN, a refund answer) on PostgreSQL is one
        statement, built once: its UPDATE in a WITH clause of the history INSERT (a single-row VALUES:
        SQLAlchemy caches the compiled form of that, never of a multi-row one).
        """
        changed = [payment for payment in payments_to_save if payment.changed and payment.id is not None]
        entries = [history_values(payment, entry) for payment in payments_to_save for entry in payment.history]
        if len(changed) == 1 and len(entries) == 1 and entries[0]["payment_id"] == changed[0].id \
                and on_postgresql(self._connection):
            self._connection.execute(SAVE_ONE_PAYMENT, {
                "p_id": changed[0].id, **{f"p_{name}": value for name, value in payment_values(changed[0]).items()},
                **{f"h_{name}": value for name, value in entries[0].items()}})
            changed = entries = []
        if changed:
            self._connection.execute(
                payments.update().where(payments.c.id == sa.bindparam("b_id")).values(
                    **{name: sa.bindparam(f"b_{name}") for name in PAYMENT_FIELDS}),
                [{"b_id": payment.id, **{f"b_{k}": v for k, v in payment_values(payment).items()}}
                 for payment in changed],
            )
        if entries:
            self._connection.execute(payment_history.insert(), entries)
        for payment in payments_to_save:
            payment.changed = False
            payment.history.clear()

    def amend_creation_evidence(self, payment, evidence):
        """The gateway's checkout answer joins the evidence of the payment's creation entry."""
        self._connection.execute(payment_history.update().where(
            payment_history.c.payment_id == payment.id, payment_history.c.source == Source.create.value,
        ).values(evidence=jsonable(evidence)))


class SqlCharges:
    def __init__(self, connection):
        self._connection = connection
        self.seen = []

    def track(self, charge):
        """``charge`` is saved with the unit of work (a charge another repository loaded)."""
        self.seen.append(charge)
        return charge

    def get_for_update(self, dossier_code):
        row = self._connection.execute(
            sa.select(charges).where(charges.c.dossier_code == dossier_code).with_for_update()
        ).mappings().first()
        return self.track(charge_from_row(row)) if row is not None else None

    def get_many_for_update(self, dossier_codes):
        """``{dossier_code: Charge}`` for these dossiers, locked in code order."""
        statement = sa.select(charges).where(charges.c.dossier_code.in_(sorted(dossier_codes))) \
            .order_by(charges.c.dossier_code)
        if on_postgresql(self._connection):
            statement = statement.with_for_update()
        found = {row["dossier_code"]: charge_from_row(row) for row in self._connection.execute(statement).mappings()}
        self.seen.extend(found.values())
        return found

    def add_if_missing(self, charge):
        """Insert ``charge`` unless the dossier has one already; then lock and return the stored one."""
        values = {name: getattr(charge, name) for name in CHARGE_FIELDS}
        values.update(status=charge.status.value, dossier_code=charge.dossier_code, created_at=charge.created_at)
        inserted = self._connection.execute(
            dialect_insert(self._connection, charges).values(**values).on_conflict_do_nothing().returning(*charges.c)).mappings().first()
        if inserted is not None:  # ours, so locked by this transaction already
            return self.track(charge_from_row(inserted))
        return self.get_for_update(charge.dossier_code)

    def save(self, charges_to_save):
        changed = [charge for charge in charges_to_save if charge.changed]
        if changed:
            self._connection.execute(
                charges.update().where(charges.c.dossier_code == sa.bindparam("b_code")).values(
                    **{name: sa.bindparam(f"b_{name}") for name in CHARGE_FIELDS}),
                [{"b_code": charge.dossier_code, **{f"b_{name}": getattr(charge, name) for name in CHARGE_FIELDS},
                  "b_status": charge.status.value} for charge in changed],
            )
        for charge in changed:
            charge.changed = False
