"""The notify unit of work: one transaction, the repositories inside it, the events it raised.

``with uow: ... uow.commit()`` — leaving the block without ``commit()`` rolls
back. ``commit()`` writes back the notifications ``uow.notifications`` handed
out, passes their new events through the bus's in-transaction handlers (each
``DeliveryQueued`` becomes a delivery message in the outbox, all of them one
multi-row INSERT) and commits; the mechanics are ``portal_shared.unit_of_work``'s.
"""
from notify import messagebus
from notify.repositories import SqlContacts, SqlNotifications, record_first_sightings_pg
from portal_shared import unit_of_work
from portal_shared.repositories import SqlInbox, SqlOutbox
from portal_shared.sqltypes import on_postgresql


class AbstractUnitOfWork(unit_of_work.AbstractUnitOfWork):
    notifications = contacts = outbox = inbox = None
    in_transaction = messagebus.IN_TRANSACTION

    def _seen(self):
        return self.notifications.seen

    def _save(self, seen):
        self.notifications.save()

    def record_first_sightings(self, sightings, now):
        """Claim each ``FirstSight``'s event in the inbox and, where the claim is new (of a copy given twice,
        the first), store its contact and notifications, with their delivery messages; committed. Returns a
        boolean per sighting, in order: True where it was stored."""
        with self:
            fresh = self.inbox.claim_all([sighting.claim for sighting in sightings])
            kept = [sighting for sighting, new in zip(sightings, fresh, strict=True) if new]
            for sighting in kept:
                self.notifications.add(*sighting.notifications)
            if kept:
                self.contacts.save_all([sighting.contact for sighting in kept], now)
            self.commit()
        return fresh


class SqlUnitOfWork(unit_of_work.DatabaseUnitOfWork, AbstractUnitOfWork):
    """Over a ``portal_shared.db.UnitOfWork`` (its session, and the relay woken after a commit that
    recorded events): a worker's ``Database`` dependency, or one the delivery pipeline keeps."""

    def record_first_sightings(self, sightings, now):
        """On PostgreSQL one statement that commits by itself (``record_first_sightings_pg``): the claims,
        the contacts, the notifications and the outbox rows of the new events in one round trip, where a
        transaction of its own took six (BEGIN, a statement per table, COMMIT), each a turn of the event
        loop while it waits."""
        if not on_postgresql(self._database.session):
            return super().record_first_sightings(sightings, now)
        with self.autocommitting():
            for sighting in sightings:
                for notification in sighting.notifications:
                    for event in notification.events:
                        self.handle_in_transaction(event)  # its delivery message, an outbox row
            rows = self.outbox.take()
            fresh = record_first_sightings_pg(self._session, sightings, rows, now)
            for sighting, new in zip(sightings, fresh, strict=True):
                for notification in sighting.notifications:
                    if new:
                        self._flushed_events.extend(notification.events)
                    notification.events.clear()
        return fresh

    def _open(self, session):
        self._session = session
        self.notifications = SqlNotifications(session)
        self.contacts = SqlContacts(session)
        self.outbox = SqlOutbox(session, self._call_id_stack)
        self.inbox = SqlInbox(session)

    def close(self):
        self._database.close()
