"""The outbox and inbox as repositories of a unit of work (``portal_shared.unit_of_work``).

Each writes in the unit of work's session, so an event recorded or claimed
commits or rolls back with the change it belongs to. Fakes for unit tests keep
the same two methods.
"""
from portal_shared.inbox import claim_event, claim_events
from portal_shared.outbox import outbox_row, record_events


class SqlOutbox:
    """Events recorded in the caller's transaction (``portal_shared.outbox``), all of a
    transaction's in one multi-row INSERT when the unit of work commits (``flush()``)."""

    def __init__(self, session, call_id_stack=None):
        self._session = session
        self._call_id_stack = call_id_stack
        self._pending = []

    def add(self, event_type, payload, aggregate_key=None, headers=None):
        self._pending.append(outbox_row(event_type, payload, aggregate_key, self._call_id_stack, headers))

    def flush(self):
        record_events(self._session, self.take())

    def take(self):
        """The rows added since the last ``flush``, for a caller that writes them itself (removed here)."""
        rows, self._pending = self._pending, []
        return rows


class SqlInbox:
    def __init__(self, session):
        self._session = session

    def claim(self, consumer, event_id):
        """True the first time ``consumer`` sees ``event_id`` (its claim is part of this transaction)."""
        return claim_event(self._session, consumer, event_id)

    def claim_all(self, claims):
        """``claim`` for each ``(consumer, event_id)`` of ``claims``, in one statement (``claim_events``):
        a list of booleans in their order, True where the pair is seen for the first time (only the first
        copy of a pair given twice)."""
        fresh = claim_events(self._session, claims)
        answers = []
        for consumer, event_id in claims:
            claim = (consumer, str(event_id))
            answers.append(claim in fresh)
            fresh.discard(claim)
        return answers
