"""The outbox relay: committed outbox rows to RabbitMQ, confirmed, in order.

``OutboxRelay`` publishes committed rows to RabbitMQ with the wire format of
Nameko's ``EventDispatcher`` (exchange ``<service>.events``, topic, routing
key = event type, JSON body and content type, persistent, the
``nameko.call_id_stack`` header, ``message_id`` = event id) over one
long-lived pika connection and channel in confirm mode. It sends a batch with
up to ``window`` messages awaiting their confirm, then marks the confirmed
rows published in one statement. It is woken right after each commit in this
process, by ``NOTIFY`` for commits in other processes, and by a periodic sweep
that picks up whatever a crash or a broker outage left behind.

Delivery is at least once: a row is marked only after the broker confirmed it,
so a crash between the confirm and the mark publishes it again (consumers'
inboxes drop the duplicate); a nack, a confirm timeout or a lost connection
leaves the row and every later row of the batch unpublished, to be retried
after a back-off on a new connection.

Ordering: rows are published in id order by one relay at a time: on PostgreSQL
the relay that takes the service's advisory lock keeps it for its database
session (its statements commit by themselves; the statement that marks a
confirmed batch also reads the next one, so a flush is a SELECT and then one
statement per batch), the relays of the other processes ask again once per
sweep and take over when that session ends; changes to one aggregate are
serialised by a row lock in the service, so per aggregate the id order is the
commit order. Only the confirmed prefix of a batch is marked, so a row is
never marked before an earlier one.
"""
import threading
import time
from datetime import timedelta

import pika
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from portal_shared.logs import get_logger
from portal_shared.outbox import NOTIFY_CHANNEL
from portal_shared.schema import outbox_table
from portal_shared.timeutil import isoformat, utcnow

log = get_logger(__name__)

RELAY_LOCK_KEY = 7_300_002
PERSISTENT = 2


class PublishError(Exception):
    """The broker did not confirm a message (nack, timeout or connection lost)."""


class _OneWritePerMessage(pika.SelectConnection):
    """pika writes a message's method, header and body frames with one send() each; joined,
    a message costs one system call (a third of the relay's CPU time went to send())."""

    def _output_marshaled_frames(self, marshaled_frames):
        super()._output_marshaled_frames([b"".join(marshaled_frames)])


class ConfirmingPublisher:
    """One pika connection and channel in confirm mode, with many confirms outstanding.

    The connection's I/O loop is driven by the caller (``publish`` and ``wait``), so it
    needs no thread of its own and runs on an eventlet green thread as on a real one.
    ``unconfirmed`` holds the delivery tags sent and not yet acknowledged, ``nacked`` those
    the broker refused, ``failed`` the reason the channel can no longer be trusted (a nack
    or the connection closing).
    """

    connect_timeout = 10.0

    def __init__(self, amqp_uri, exchange, heartbeat=60):
        self.parameters = pika.URLParameters(amqp_uri)
        self.parameters.heartbeat = heartbeat
        self.parameters.connection_attempts = 1
        self.parameters.socket_timeout = self.connect_timeout
        self.exchange = exchange
        self._connection = None
        self._channel = None
        self._next_tag = 1
        self.unconfirmed = set()
        self.nacked = set()
        self.failed = None
        self._ready = False

    # --- connection ---------------------------------------------------------------

    @property
    def is_open(self):
        return self._ready and self.failed is None

    def open(self):
        steps = {}
        self._connection = _OneWritePerMessage(
            self.parameters,
            on_open_callback=lambda _c: steps.setdefault("connected", True),
            on_open_error_callback=lambda _c, error: self.mark_failed(error),
            on_close_callback=lambda _c, reason: self.mark_failed(reason),
        )
        self._connection.ioloop.activate_poller()
        self._wait_for(lambda: "connected" in steps, self.connect_timeout, "connection")
        self._channel = self._connection.channel(on_open_callback=lambda _ch: steps.setdefault("channel", True))
        self._wait_for(lambda: "channel" in steps, self.connect_timeout, "channel")
        self._channel.add_on_close_callback(lambda _ch, reason: self.mark_failed(reason))
        self._channel.confirm_delivery(self._on_confirm, callback=lambda _f: steps.setdefault("confirm", True))
        self._wait_for(lambda: "confirm" in steps, self.connect_timeout, "confirm mode")
        # as Nameko declares it: a durable topic exchange, not auto-deleted
        self._channel.exchange_declare(self.exchange, "topic", durable=True,
                                       callback=lambda _f: steps.setdefault("exchange", True))
        self._wait_for(lambda: "exchange" in steps, self.connect_timeout, "exchange declaration")
        self._ready = True

    def close(self):
        connection, self._connection, self._channel, self._ready = self._connection, None, None, False
        if connection is None:
            return
        try:
            if connection.is_open:
                connection.close()
                self._drive(lambda: connection.is_closed, 2.0)
        except Exception:  # closing a broken connection: nothing left to save
            pass
        finally:
            try:
                connection.ioloop.close()
            except Exception:
                pass

    def mark_failed(self, reason):
        if self.failed is None:
            self.failed = PublishError(str(reason) or type(reason).__name__)

    # --- publishing ---------------------------------------------------------------

    def publish(self, routing_key, body, headers, message_id):
        """Send one message; return its delivery tag (confirmed later)."""
        properties = pika.BasicProperties(
            content_type="application/json",
            content_encoding="utf-8",
            headers=headers,
            delivery_mode=PERSISTENT,
            priority=0,
            message_id=message_id,
        )
        self._channel.basic_publish(self.exchange, routing_key, body, properties)
        tag, self._next_tag = self._next_tag, self._next_tag + 1
        self.unconfirmed.add(tag)
        return tag

    def _on_confirm(self, frame):
        method = frame.method
        tags = {t for t in self.unconfirmed if t <= method.delivery_tag} if method.multiple else {method.delivery_tag}
        self.unconfirmed -= tags
        if isinstance(method, pika.spec.Basic.Nack):
            self.nacked |= tags
            self.mark_failed(f"broker nacked delivery tag {method.delivery_tag}")

    def wait(self, condition, timeout):
        """Drive the connection until ``condition()``; False on timeout or failure."""
        return self._drive(condition, timeout) and self.failed is None

    def settle(self, timeout):
        """Wait for the confirms still due, unless the connection is gone."""
        if self.unconfirmed and self._connection is not None:
            self._drive(lambda: not self.unconfirmed or not self._connection.is_open, timeout, stop_on_failure=False)

    def keep_alive(self):
        """Let the I/O loop send heartbeats and notice a closed connection, without waiting."""
        if self._connection is not None:
            self._drive(lambda: True, 0)

    def _wait_for(self, condition, timeout, what):
        if not self._drive(condition, timeout) or self.failed is not None:
            raise self.failed or PublishError(f"RabbitMQ {what} timed out")

    def _drive(self, condition, timeout, stop_on_failure=True):
        ioloop = self._connection.ioloop
        expired = []
        timer = ioloop.call_later(max(timeout, 0), lambda: expired.append(True))
        try:
            while True:
                ioloop.poll()
                ioloop.process_timeouts()
                if condition():
                    return True
                if expired or (stop_on_failure and self.failed is not None):
                    return False
        finally:
            ioloop.remove_timeout(timer)


# built once: the relay runs them for every batch, and building a statement costs more than running it.
# The payload is read as stored: the text json.dumps made of it, which is also what Nameko's serializer
# would send, so it goes out without a decode and encode.
_UNPUBLISHED = (
    sa.select(outbox_table.c.id, outbox_table.c.event_id, outbox_table.c.event_type,
              sa.cast(outbox_table.c.payload, sa.Text).label("body"), outbox_table.c.headers)
    .where(outbox_table.c.published_at.is_(None))
    .order_by(outbox_table.c.id)
    .limit(sa.bindparam("limit"))
)
_MARK_PUBLISHED = (
    outbox_table.update()
    .where(outbox_table.c.id.in_(sa.bindparam("ids", expanding=True)))
    .values(published_at=sa.bindparam("now", type_=outbox_table.c.published_at.type))
)


def _mark_then_next():
    """PostgreSQL: mark a confirmed batch published and read the next one, in one statement (the relay's
    leading connection commits it by itself). The read sees the rows as they were before the mark, so
    the batch just marked is left out by its ids (not by "id greater than": a transaction that took a
    lower id may have committed after the batch was read)."""
    ids = sa.bindparam("ids", type_=postgresql.ARRAY(outbox_table.c.id.type))
    marked = (
        outbox_table.update()
        .where(outbox_table.c.id == sa.any_(ids))
        .values(published_at=sa.bindparam("now", type_=outbox_table.c.published_at.type))
        .returning(outbox_table.c.id)
        .cte("marked")
    )
    return _UNPUBLISHED.where(sa.not_(outbox_table.c.id == sa.any_(ids))).add_cte(marked)


_MARK_THEN_NEXT = _mark_then_next()


def _end_session(connection):
    """Close the database session under ``connection`` instead of pooling it: its advisory lock ends with it."""
    try:
        connection.invalidate()
        connection.close()
    except Exception:  # the connection is broken already: the server ended the session
        pass


class OutboxRelay:
    """Publishes committed outbox rows; see the module docstring."""

    batch_size = 1000
    window = 500  # messages awaiting their confirm at any time
    confirm_timeout_seconds = 30.0
    max_backoff_seconds = 5.0
    listen_poll_seconds = 1.0

    prune_every_seconds = 600.0

    def __init__(self, engine, amqp_uri, service_name, sweep_seconds=1.0, retention_hours=168.0):
        self.engine = engine
        self._amqp_uri = amqp_uri
        self.service_name = service_name
        self.exchange_name = f"{service_name}.events"
        self.sweep_seconds = sweep_seconds
        self.retention = timedelta(hours=retention_hours)
        self._next_prune = 0.0
        self._wake = threading.Event()
        self._running = False
        self._stopping = False  # stop() asked: the batch under way is marked and the relay returns
        self._publisher = None
        self._local_lock = threading.Lock()  # SQLite: no advisory locks, one process
        self._leading = None  # PostgreSQL: the connection holding the service's relay lock
        self._next_lead_attempt = 0.0

    @property
    def amqp_uri(self):
        return self._amqp_uri

    @amqp_uri.setter
    def amqp_uri(self, value):
        """Point the relay at another broker: the current connection is dropped."""
        self._amqp_uri = value
        self._disconnect()

    def wake(self):
        self._wake.set()

    def stop(self):
        self._running = False
        self._stopping = True
        self._wake.set()

    def run(self):
        """Relay loop: flush on every wake-up and at least every sweep interval."""
        self._running, self._stopping = True, False
        if self.engine.dialect.name == "postgresql":
            threading.Thread(target=self._listen, name=f"outbox-listen-{self.service_name}", daemon=True).start()
        failures = 0
        try:
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
        finally:
            self._running = False
            self.close()

    def _delay(self, failures):
        """Sweep interval, doubled per consecutive failure up to ``max_backoff_seconds``."""
        return min(self.max_backoff_seconds, self.sweep_seconds * 2**failures)

    def _listen(self):
        """Wake the relay on every ``NOTIFY`` from a commit in any process of the service."""
        from select import select

        failures = 0
        while self._running:
            connection = None
            try:
                connection = self.engine.raw_connection()
                dbapi = connection.driver_connection
                connection.detach()  # LISTEN state must not go back into the pool
                dbapi.autocommit = True
                with dbapi.cursor() as cursor:
                    cursor.execute(f"LISTEN {NOTIFY_CHANNEL}")
                failures = 0
                self.wake()  # anything committed while we were not listening
                while self._running:
                    select([dbapi], [], [], self.listen_poll_seconds)
                    dbapi.poll()
                    if dbapi.notifies:
                        dbapi.notifies.clear()
                        self.wake()
            except Exception as exc:  # database away: the sweep still runs; listen again later
                failures = min(failures + 1, 5)
                log.warning("outbox_listen_failed", error=str(exc))
                time.sleep(self._delay(failures))
            finally:
                if connection is not None:
                    try:
                        connection.close()
                    except Exception:
                        pass

    # --- publishing -----------------------------------------------------------------

    def _connected_publisher(self):
        publisher = self._publisher
        if publisher is not None and publisher.is_open:
            return publisher
        self._disconnect()
        publisher = ConfirmingPublisher(self._amqp_uri, self.exchange_name,
                                        heartbeat=max(60, int(3 * self.sweep_seconds)))
        try:
            publisher.open()
        except BaseException:
            publisher.close()
            raise
        self._publisher = publisher
        return publisher

    def close(self):
        """Drop the broker connection and, on PostgreSQL, the relay lock (another process may lead)."""
        self._disconnect()
        self._resign()

    def _disconnect(self):
        publisher, self._publisher = self._publisher, None
        if publisher is not None:
            publisher.close()

    def flush(self):
        """Publish every unpublished row, oldest first; return how many."""
        if self._publisher is not None:
            self._publisher.keep_alive()
        if self.engine.dialect.name == "postgresql":
            return self._flush_leading()
        total = 0
        while True:
            with self._local_lock:  # SQLite: one process, no advisory locks
                with self.engine.begin() as connection:
                    confirmed, error = self._relay_rows(connection)
            # committed: what was confirmed stays marked even when a later row failed
            if error is not None:
                raise error
            total += confirmed
            if confirmed < self.batch_size:
                return total

    def _flush_leading(self):
        """PostgreSQL: batch after batch on the leading connection, each batch's mark and the next batch's
        read being one statement, until a read finds nothing."""
        connection = self._leading_connection()
        if connection is None:
            return 0  # another process of the service relays: its NOTIFY wake-ups are the same as ours
        try:
            total, error = self._relay_chained(connection)
        except BaseException:
            self._resign()  # a broken connection is not reused; another process may lead meanwhile
            raise
        # committed: what was confirmed stays marked even when a later row failed
        if error is not None:
            raise error
        return total

    def _leading_connection(self):
        """The connection through which this process relays, holding the service's advisory lock for its
        whole session; None while another process holds it (asked again at most once per sweep). Each
        statement on it commits by itself: no BEGIN, lock and COMMIT around a batch."""
        if self._leading is not None:
            return self._leading
        if time.monotonic() < self._next_lead_attempt:
            return None
        self._next_lead_attempt = time.monotonic() + self.sweep_seconds
        connection = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        try:
            if connection.execute(sa.text("SELECT pg_try_advisory_lock(:key)"), {"key": RELAY_LOCK_KEY}).scalar():
                self._leading = connection
                return connection
        except BaseException:
            _end_session(connection)
            raise
        connection.close()  # no lock taken: back to the pool as it was
        return None

    def _resign(self):
        connection, self._leading = self._leading, None
        self._next_lead_attempt = 0.0
        if connection is not None:
            _end_session(connection)

    def _relay_chained(self, connection):
        """Publish batches until none is left: (published, error). A fully confirmed batch is marked by the
        statement that reads the next one; a batch that failed, or the last one while stopping, is marked
        on its own (``_settle``)."""
        rows = connection.execute(_UNPUBLISHED, {"limit": self.batch_size}).all()
        total = 0
        while rows:
            confirmed, error = self._send(rows)
            total += confirmed
            if error is not None or self._stopping:
                self._settle(connection, rows, confirmed, error)
                return total, error
            rows = connection.execute(_MARK_THEN_NEXT, {
                "ids": [row.id for row in rows], "now": utcnow(), "limit": self.batch_size}).all()
        return total, None

    def _relay_rows(self, connection):
        """Publish the oldest unpublished rows (one batch) and mark the confirmed ones: (confirmed, error)."""
        rows = connection.execute(_UNPUBLISHED, {"limit": self.batch_size}).all()
        if not rows:
            return 0, None
        confirmed, error = self._send(rows)
        self._settle(connection, rows, confirmed, error)
        return confirmed, error

    def _send(self, rows):
        try:
            return self._publish(rows)
        except Exception as exc:  # no connection: nothing was sent
            return 0, exc

    def _settle(self, connection, rows, confirmed, error):
        """Mark the confirmed prefix of ``rows`` published; count ``error`` against the first row after it."""
        if confirmed:
            connection.execute(_MARK_PUBLISHED, {"ids": [row.id for row in rows[:confirmed]], "now": utcnow()})
        if error is not None:
            connection.execute(
                outbox_table.update()
                .where(outbox_table.c.id == rows[confirmed].id)
                .values(attempts=outbox_table.c.attempts + 1, last_error=str(error)[:500])
            )

    def _publish(self, rows):
        """Send ``rows`` with up to ``window`` unconfirmed; return (confirmed prefix length, error)."""
        publisher = self._connected_publisher()
        tags = []
        try:
            for row in rows:
                # window full: refill once half of it is confirmed (one I/O pass per many messages)
                if len(publisher.unconfirmed) >= self.window and not publisher.wait(
                    lambda: len(publisher.unconfirmed) <= self.window // 2, self.confirm_timeout_seconds
                ):
                    break
                tags.append(publisher.publish(row.event_type, row.body.encode("utf-8"), row.headers or {}, row.event_id))
            else:
                publisher.wait(lambda: not publisher.unconfirmed, self.confirm_timeout_seconds)
            # after a nack the channel is still open: collect the confirms of earlier messages
            publisher.settle(self.confirm_timeout_seconds)
        except Exception as exc:  # the socket broke under basic_publish
            publisher.mark_failed(exc)
        confirmed = 0
        for tag in tags:
            if tag in publisher.unconfirmed or tag in publisher.nacked:
                break
            confirmed += 1
        error = None
        if confirmed < len(rows):
            error = publisher.failed or PublishError("broker confirms timed out")
            self._disconnect()  # a channel with lost or late confirms is not reused
        return confirmed, error

    # --- housekeeping ---------------------------------------------------------------

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
