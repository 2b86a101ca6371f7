"""Hand-written fakes for the payment use cases: a unit of work over dicts, and a scripted gateway.

``FakeUnitOfWork`` behaves as the SQL one does where the use cases can tell:
each ``with uow:`` block works on a copy of the committed state, ``commit()``
makes it the committed state, leaving the block without committing throws it
away; repositories hand out copies, so a change counts only once it is saved.
"""
import copy
from dataclasses import dataclass, field, replace

from payment.domain.model import Outcome, Source, Status
from payment.gateways import CheckoutResult, Gateway, PaymentReport, RefundResult
from payment.unit_of_work import AbstractUnitOfWork
from portal_shared.testing.memory import FakeInbox, FakeOutbox


def snapshot(payment):
    return replace(payment, history=[], events=[], charge=None, changed=False)


@dataclass
class Store:
    payments: dict = field(default_factory=dict)  # txn_ref → Payment
    charges: dict = field(default_factory=dict)  # dossier_code → Charge
    history: list = field(default_factory=list)  # (txn_ref, HistoryEntry)
    outbox: list = field(default_factory=list)  # (event_type, payload, aggregate_key)
    inbox: set = field(default_factory=set)  # (consumer, event_id)
    busy: set = field(default_factory=set)  # txn_refs another transaction holds locked
    next_id: int = 1


class FakeCharges:
    def __init__(self, store):
        self._store = store
        self.seen = []

    def _hand_out(self, charge):
        charge = copy.copy(charge)
        self.seen.append(charge)
        return charge

    def get_for_update(self, dossier_code):
        charge = self._store.charges.get(dossier_code)
        return self._hand_out(charge) if charge is not None else None

    def get_many_for_update(self, dossier_codes):
        return {code: self.get_for_update(code) for code in sorted(dossier_codes) if code in self._store.charges}

    def add_if_missing(self, charge):
        self._store.charges.setdefault(charge.dossier_code, copy.copy(charge))
        return self.get_for_update(charge.dossier_code)

    def save(self, charges):
        for charge in charges:
            if charge.changed:
                charge.changed = False
                self._store.charges[charge.dossier_code] = copy.copy(charge)


class FakePayments:
    def __init__(self, store, charges):
        self._store = store
        self._charges = charges
        self.seen = []

    def _track(self, payment):
        self.seen.append(payment)
        return payment

    def add(self, payment):
        payment.id, self._store.next_id = self._store.next_id, self._store.next_id + 1
        self._store.payments[payment.txn_ref] = snapshot(payment)
        payment.changed = False
        return self._track(payment)

    def get(self, txn_ref):
        payment = self._store.payments.get(txn_ref)
        return snapshot(payment) if payment is not None else None

    def get_for_update(self, txn_ref, gateway=None, skip_locked=False, with_charge=True):
        payment = self._store.payments.get(txn_ref)
        if payment is None or (gateway is not None and payment.gateway != gateway):
            return None
        if skip_locked and txn_ref in self._store.busy:
            return None
        payment = snapshot(payment)
        if with_charge:
            payment.charge = self._charges.get_for_update(payment.dossier_code)
        return self._track(payment)

    def get_many_for_update(self, ids):
        found = [snapshot(p) for p in self._ordered() if p.id in set(ids)]
        charges = self._charges.get_many_for_update({payment.dossier_code for payment in found})
        for payment in found:
            payment.charge = charges.get(payment.dossier_code)
        return [self._track(payment) for payment in found]

    def succeeded_for_update(self, dossier_code):
        return [self._track(snapshot(p)) for p in self._ordered()
                if p.dossier_code == dossier_code and p.status is Status.succeeded]

    def find_reusable(self, dossier_code, gateway, amount, after):
        found = [p for p in self._ordered() if p.dossier_code == dossier_code and p.is_reusable(gateway, amount, after)]
        return snapshot(found[-1]) if found else None

    def count_for_dossier(self, dossier_code):
        return sum(1 for p in self._store.payments.values() if p.dossier_code == dossier_code)

    def for_dossier(self, dossier_code, limit=200):
        return [snapshot(p) for p in self._ordered() if p.dossier_code == dossier_code][:limit]

    def txn_refs_in(self, status, limit):
        return [p.txn_ref for p in self._ordered() if p.status is Status(status)][:limit]

    def claim_refund_attempt(self, payment, previous, lease_cutoff):
        stored = self._store.payments[payment.txn_ref]
        free = not stored.refund_attempts or stored.refund_error is not None or stored.updated_at <= lease_cutoff
        if stored.status is not Status.refund_pending or stored.refund_attempts != previous or not free:
            return False
        stored.refund_attempts, stored.refund_error, stored.updated_at = (
            payment.refund_attempts, None, payment.updated_at)
        return True

    def save(self, payments):
        for payment in payments:
            self._store.history.extend((payment.txn_ref, entry) for entry in payment.history)
            if payment.changed:
                self._store.payments[payment.txn_ref] = snapshot(payment)
            payment.changed = False
            payment.history.clear()

    def amend_creation_evidence(self, payment, evidence):
        for index, (txn_ref, entry) in enumerate(self._store.history):
            if txn_ref == payment.txn_ref and entry.source is Source.create:
                self._store.history[index] = (txn_ref, replace(entry, evidence=evidence))

    def _ordered(self):
        return sorted(self._store.payments.values(), key=lambda p: p.id)


class FakeUnitOfWork(AbstractUnitOfWork):
    def __init__(self):
        super().__init__()
        self.store = Store()
        self.commits = 0

    def __enter__(self):
        self._work = copy.deepcopy(self.store)
        self.charges = FakeCharges(self._work)
        self.payments = FakePayments(self._work, self.charges)
        self.outbox = FakeOutbox(self._work)
        self.inbox = FakeInbox(self._work)
        return super().__enter__()

    def _commit(self):
        self.store = self._work
        self._work = copy.deepcopy(self.store)  # what the block may still touch is not the committed state
        self.commits += 1

    def rollback(self):
        self._work = None

    # --- for assertions ---
    def payment(self, txn_ref):
        return self.store.payments.get(txn_ref)

    def charge(self, dossier_code):
        return self.store.charges.get(dossier_code)

    def history(self, txn_ref):
        return [entry for ref, entry in self.store.history if ref == txn_ref]

    def events(self, event_type=None):
        return [(kind, payload) for kind, payload, _ in self.store.outbox if event_type in (None, kind)]


class FakeGateway(Gateway):
    """A gateway whose answers the test scripts: ``notification``, ``query_answer``, ``refund_answer``.

    An answer that is an exception instance is raised. Every call is kept in ``calls``.
    """

    def __init__(self, name, configured=True, refused_amount=None):
        self.name = name
        self._configured = configured
        self.refused_amount = refused_amount
        self.checkout_answer = None
        self.notification = None
        self.query_answer = None
        self.refund_answer = RefundResult(True, raw={"resultCode": 0})
        self.calls = []
        self.during_refund = None  # a callable run while the gateway "answers" (a concurrent change)

    @property
    def configured(self):
        return self._configured

    def refuse_amount(self, amount):
        return self.refused_amount

    def _answer(self, answer):
        if isinstance(answer, Exception):
            raise answer
        return answer

    def create_checkout(self, request):
        self.calls.append(("checkout", request))
        return self._answer(self.checkout_answer or CheckoutResult(f"https://pay.example/{request.txn_ref}",
                                                                   raw={"payUrl": "yes"}))

    def parse_notification(self, params):
        self.calls.append(("notification", params))
        return self._answer(self.notification)

    def query(self, request):
        self.calls.append(("query", request))
        return self._answer(self.query_answer or PaymentReport(request.txn_ref, Outcome.pending))

    def refund(self, request):
        self.calls.append(("refund", request))
        if self.during_refund is not None:
            self.during_refund()
        return self._answer(self.refund_answer)


class FakeReturnUrls:
    def refusal(self, url):
        return None if url.startswith("https://portal.example/") else "must be a page of the portal"


class FakeSettings:
    def __init__(self, **gateways):
        self.gateways = gateways or {"vnpay": FakeGateway("vnpay"), "momo": FakeGateway("momo")}
        self.expiry_minutes = 15
        self.max_attempts = 3
        self.return_urls = FakeReturnUrls()
        self.momo_ipn_url = "https://portal.example/callbacks/momo/ipn"

    def gateway(self, name):
        return self.gateways[name]
