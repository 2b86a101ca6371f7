"""Transactional outbox: events are rows written with the state change.

``record_event`` adds an event to the caller's session, so it commits or rolls
back with the change that caused it. ``OutboxRelay`` publishes committed rows
to RabbitMQ exactly as Nameko's ``EventDispatcher`` would (exchange
``<service>.events``, routing key = event type, JSON, persistent), waits for
the broker's confirm, and only then marks the rows published. It is woken
right after each commit and also sweeps periodically, which picks up whatever
a crash or a broker outage left behind.

Ordering: rows are published in id order by one relay at a time (a PostgreSQL
advisory lock spans the processes of a service); changes to one aggregate are
serialised by a row lock in the service, so per aggregate the id order is the
commit order.
"""
import threading
import time
import uuid
from datetime import timedelta

import sqlalchemy as sa
from nameko.amqp.publish import Publisher
from nameko.standalone.events import get_event_exchange

from portal_shared.logs import get_logger
from portal_shared.schema import outbox_table
from portal_shared.timeutil import isoformat, utcnow

log = get_logger(__name__)

PENDING_FLAG = "outbox_pending"
RELAY_LOCK_KEY = 7_300_002


def new_event(**fields):
    """An event envelope: a fresh ``event_id`` and ``occurred_at`` plus the fields."""
    return {"event_id": str(uuid.uuid4()), "occurred_at": isoformat(utcnow()), **fields}


def record_event(session, event_type, payload, aggregate_key=None, call_id_stack=None):
    """Write an event into the outbox inside the caller's transaction."""
    if "event_id" not in payload:
        raise ValueError("event payload needs an event_id (use new_event)")
    session.execute(
        outbox_table.insert().values(
            event_id=payload["event_id"],
            event_type=event_type,
            aggregate_key=aggregate_key,
            payload=payload,
            headers={"nameko.call_id_stack": list(call_id_stack)} if call_id_stack else None,
            created_at=utcnow(),
            attempts=0,
        )
    )
    session.info[PENDING_FLAG] = True


class OutboxRelay:
    """Publishes committed outbox rows; see the module docstring."""

    batch_size = 500
    max_backoff_seconds = 5.0

    prune_every_seconds = 600.0

    def __init__(self, engine, amqp_uri, service_name, sweep_seconds=1.0, retention_hours=168.0):
        self.engine = engine
        self.amqp_uri = amqp_uri
        self.service_name = service_name
        self.sweep_seconds = sweep_seconds
        self.retention = timedelta(hours=retention_hours)
        self._next_prune = 0.0
        self.exchange = get_event_exchange(service_name, {})
        self._wake = threading.Event()
        self._running = False
        self._local_lock = threading.Lock()  # SQLite: no advisory locks, one process

    def wake(self):
        self._wake.set()

    def stop(self):
        self._running = False
        self._wake.set()

    def run(self):
        """Relay loop: flush on every wake-up and at least every sweep interval."""
        self._running = True
        failures = 0
        while self._running:
            self._wake.wait(self._delay(failures))
            self._wake.clear()
            if not self._running:
                break
            try:
                self.flush()
                failures = 0
                if time.monotonic() >= self._next_prune:
                    self.prune()
                    self._next_prune = time.monotonic() + self.prune_every_seconds
            except Exception as exc:  # broker or database away: keep rows, retry later
                failures = min(failures + 1, 5)
                log.warning("outbox_relay_failed", error=str(exc), retry_in_s=self._delay(failures))

    def _delay(self, failures):
        """Sweep interval, doubled per consecutive failure up to ``max_backoff_seconds``."""
        return min(self.max_backoff_seconds, self.sweep_seconds * 2**failures)

    def _publisher(self):
        return Publisher(
            self.amqp_uri,
            use_confirms=True,
            serializer="json",
            declare=[self.exchange],
            retry=True,
            retry_policy={"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5},
            transport_options={"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5},
        )

    def flush(self):
        """Publish every unpublished row, oldest first; return how many left."""
        total = 0
        while True:
            published = self._flush_batch()
            total += published
            if published < self.batch_size:
                return total

    def _flush_batch(self):
        is_pg = self.engine.dialect.name == "postgresql"
        if not is_pg:
            self._local_lock.acquire()
        try:
            with self.engine.begin() as connection:
                if is_pg:
                    connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": RELAY_LOCK_KEY})
                rows = connection.execute(
                    sa.select(outbox_table.c.id, outbox_table.c.event_type, outbox_table.c.payload, outbox_table.c.headers)
                    .where(outbox_table.c.published_at.is_(None))
                    .order_by(outbox_table.c.id)
                    .limit(self.batch_size)
                ).all()
                if not rows:
                    return 0
                publisher = self._publisher()
                sent, error = [], None
                for row in rows:
                    try:
                        publisher.publish(
                            row.payload,
                            exchange=self.exchange,
                            routing_key=row.event_type,
                            extra_headers=row.headers or {},
                            message_id=row.payload.get("event_id"),
                        )
                    except Exception as exc:
                        error = exc
                        connection.execute(
                            outbox_table.update()
                            .where(outbox_table.c.id == row.id)
                            .values(attempts=outbox_table.c.attempts + 1, last_error=str(exc)[:500])
                        )
                        break
                    sent.append(row.id)
                if sent:
                    connection.execute(
                        outbox_table.update().where(outbox_table.c.id.in_(sent)).values(published_at=utcnow())
                    )
            # committed: what was confirmed stays marked even when a later row failed
            if error is not None:
                raise error
            return len(sent)
        finally:
            if not is_pg:
                self._local_lock.release()

    def prune(self, now=None):
        """Delete rows published longer ago than the retention; return how many.

        Published rows are kept a while for audit and replays; without this the
        table would grow by one row per event forever.
        """
        cutoff = (now or utcnow()) - self.retention
        with self.engine.begin() as connection:
            result = connection.execute(
                outbox_table.delete().where(outbox_table.c.published_at.is_not(None), outbox_table.c.published_at < cutoff)
            )
        if result.rowcount:
            log.info("outbox_pruned", rows=result.rowcount, older_than=isoformat(cutoff))
        return result.rowcount

    def pending_count(self):
        with self.engine.connect() as connection:
            return connection.execute(
                sa.select(sa.func.count()).select_from(outbox_table).where(outbox_table.c.published_at.is_(None))
            ).scalar_one()


def wait_until_published(relay, timeout=10.0):
    """Test and tooling helper: block until the outbox is empty."""
    deadline = time.monotonic() + timeout
    while relay.pending_count():
        if time.monotonic() > deadline:
            raise TimeoutError("outbox not drained")
        relay.wake()
        time.sleep(0.05)
