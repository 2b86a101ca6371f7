"""Hand-written fakes for the notify use cases: a unit of work over dicts.

``FakeUnitOfWork`` behaves as the SQL one does where the use cases can tell:
each ``with uow:`` block works on a copy of the committed state, ``commit()``
makes it the committed state, leaving the block without committing throws it
away; the repository hands out copies, so a change counts only once saved.
The conditional statements of the SQL repository (claims, outcomes,
receipts) are written out here as the same conditions over the dicts.
"""
from dataclasses import dataclass, field, replace

from notify.domain.model import LOST_ON_LAST_ATTEMPT, RECEIPT_APPLIES_TO, Status
from notify.unit_of_work import AbstractUnitOfWork
from portal_shared.testing.memory import FakeInbox, FakeOutbox, InMemoryUnitOfWork


def snapshot(notification):
    return replace(notification, events=[])


@dataclass
class Store:
    notifications: dict = field(default_factory=dict)  # id → Notification
    contacts: dict = field(default_factory=dict)  # dossier_code → Contact
    outbox: list = field(default_factory=list)  # (event_type, payload, aggregate_key)
    inbox: set = field(default_factory=set)  # (consumer, event_id)
    early_receipts: dict = field(default_factory=dict)  # notification id → (provider, reference, status, at)


class FakeNotifications:
    def __init__(self, store):
        self._store = store
        self.seen = []
        self._loaded = []

    def add(self, *new):
        for notification in new:
            if any(n.event_id and (n.event_id, n.channel) == (notification.event_id, notification.channel)
                   for n in self._store.notifications.values()):
                raise AssertionError("a second message for one event on one channel")  # the unique constraint
            self._store.notifications[notification.id] = snapshot(notification)
        self.seen.extend(new)

    def _hand_out(self, found):
        found = [snapshot(notification) for notification in found]
        self.seen.extend(found)
        self._loaded.extend(found)
        return found

    def _ordered(self):
        return sorted(self._store.notifications.values(), key=lambda n: (n.created_at, n.channel))

    def get(self, notification_id):
        found = self._hand_out([n for n in self._ordered() if n.id == notification_id])
        return found[0] if found else None

    def for_reference(self, reference, limit):
        return self._hand_out([n for n in self._ordered() if n.reference == reference][:limit])

    def due(self, now, limit):
        due = [n for n in self._store.notifications.values()
               if (n.status in Status.PENDING and n.next_attempt_at is not None and n.next_attempt_at <= now)
               or (n.status == Status.SENDING and n.lease_until is not None and n.lease_until < now)]
        return self._hand_out(sorted(due, key=lambda n: n.next_attempt_at)[:limit])

    def resendable(self, notification_id=None, reference=None):
        return self._hand_out([n for n in self._ordered() if n.status in Status.RESENDABLE
                               and (n.id == notification_id if notification_id else n.reference == reference)])

    def save(self):
        for notification in self._loaded:
            self._store.notifications[notification.id] = snapshot(notification)
        self._loaded.clear()

    def claim(self, deliveries, now, lease_until):
        claimed = []
        for delivery in deliveries:
            row = self._store.notifications.get(delivery.notification_id)
            if row is None:
                continue
            waiting = row.status in Status.PENDING and row.attempts == delivery.attempts
            takeover = (row.status == Status.SENDING and row.attempts > delivery.attempts
                        and (delivery.redelivered or row.lease_until < now))
            if waiting or takeover:
                row.status, row.attempts, row.lease_until, row.updated_at = (
                    Status.SENDING, row.attempts + 1, lease_until, now)
                claimed.append((row.message, row.attempts))
        return claimed

    def give_up(self, ids, now):
        for notification_id in ids:
            row = self._store.notifications[notification_id]
            row.status, row.lease_until, row.next_attempt_at, row.updated_at, row.last_error = (
                Status.TECHNICAL_FAILURE, None, None, now, LOST_ON_LAST_ATTEMPT)

    def record_attempts(self, results, now):
        for notification_id, attempts, result in results:
            row = self._store.notifications.get(notification_id)
            if row is None or row.status != Status.SENDING or row.attempts != attempts:
                continue
            row.status, row.updated_at, row.lease_until, row.last_error = result.status, now, None, result.error
            row.provider = result.provider or row.provider
            row.sent_at, row.provider_reference, row.next_attempt_at = (
                result.sent_at, result.reference, result.next_attempt_at)

    def apply_receipt(self, provider, provider_reference, status, now, notification_id=None):
        for row in self._ordered():
            if (row.channel == "sms" and row.provider == provider and row.provider_reference == provider_reference
                    and row.status in RECEIPT_APPLIES_TO and (not notification_id or row.id == notification_id)):
                row.status, row.updated_at, row.sent_at = status, now, row.sent_at or now
                row.lease_until = row.next_attempt_at = None
                if status == Status.DELIVERED:
                    row.delivered_at = now
                return row.id, row.status
        return None

    def keep_early_receipt(self, provider, provider_reference, status, notification_id, now):
        row = self._store.notifications.get(notification_id)
        if row is None or row.channel != "sms" or row.status != Status.SENDING:
            return False
        self._store.early_receipts[notification_id] = (provider, provider_reference, status, now)
        return True

    def take_early_receipts(self, notification_ids):
        return [(notification_id, *self._store.early_receipts.pop(notification_id)[:3])
                for notification_id in notification_ids if notification_id in self._store.early_receipts]

    def prune_early_receipts(self, cutoff):
        old = [key for key, (_, _, _, at) in self._store.early_receipts.items() if at < cutoff]
        for key in old:
            del self._store.early_receipts[key]
        return len(old)

    def prune_bodies(self, cutoff, pruned_body):
        pruned = 0
        for row in self._store.notifications.values():
            if row.status in (Status.SENT, Status.DELIVERED) and row.created_at < cutoff and row.body != pruned_body:
                row.body, row.html_body, row.subject = pruned_body, None, None
                pruned += 1
        return pruned


class FakeContacts:
    def __init__(self, store):
        self._store = store

    def save(self, contact, now):
        known = self._store.contacts.get(contact.dossier_code)
        if known is not None and contact.procedure_name is None:
            contact = replace(contact, procedure_name=known.procedure_name)
        self._store.contacts[contact.dossier_code] = contact

    def save_all(self, contacts_in_order, now):
        for contact in contacts_in_order:
            self.save(contact, now)

    def get(self, dossier_code):
        return self._store.contacts.get(dossier_code)


class FakeUnitOfWork(InMemoryUnitOfWork, AbstractUnitOfWork):
    def __init__(self):
        super().__init__(Store())

    def _open(self, store):
        self.notifications = FakeNotifications(store)
        self.contacts = FakeContacts(store)
        self.outbox = FakeOutbox(store)
        self.inbox = FakeInbox(store)

    # --- for assertions ---
    def notification(self, notification_id):
        return self.store.notifications[notification_id]

    def of_reference(self, reference):
        return sorted((n for n in self.store.notifications.values() if n.reference == reference),
                      key=lambda n: n.channel)

    def deliveries(self):
        """The delivery messages in the outbox: (routing key, notification id, attempts)."""
        return [(kind, payload["notification_id"], payload["attempts"]) for kind, payload, _ in self.store.outbox]
