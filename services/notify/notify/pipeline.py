"""The delivery pipeline: per-channel queues, consumers and bulkheads.

Deciding what to send and sending it are separate. The event handlers (and
the ``send_notification`` RPC) only store notifications; in the same
transaction each gets a delivery message in the outbox, which the outbox relay
publishes (persistent, with publisher confirms) to the ``notify.events``
exchange with the routing key ``deliver_sms`` / ``deliver_email``, bound to the
durable queues ``notify.delivery.sms`` / ``notify.delivery.email``.

``DeliveryPipeline`` consumes each queue on its own AMQP connection, in its own
green threads, with its own database engine: nothing it does uses Nameko's
worker pool, so a hung provider never delays event consumption, RPC or
``/healthz``, and the SMS and e-mail channels never wait for each other. Per
channel:

- the broker gives at most ``concurrency`` unacknowledged messages (prefetch);
- a claimer takes every message that has arrived (a batch when there is a
  backlog) and claims their rows in one UPDATE (``ClaimDeliveries``);
  messages whose row is not claimable (already sent, a stale duplicate) are
  acknowledged at once;
- each claimed message is sent in the channel's pool of ``concurrency`` green
  threads (the SMS router adds a bounded concurrency and a rate limit per
  provider; the mailer reuses a pool of SMTP connections);
- a recorder writes every finished outcome in one UPDATE (``RecordOutcomes``), and
  only then acknowledges those messages.

A process killed mid-send leaves its messages unacknowledged: the broker hands
them at once to another consumer, or to this one after a restart, flagged
redelivered, which lets the claim take over the row without waiting for its
lease. The lease (``NOTIFY_SENDING_LEASE_SECONDS``) stays as the safety net
for a message the broker itself lost (the ``send_due`` timer queues the row
again once the lease ran out).
"""
import time

import eventlet
from eventlet.event import Event
from eventlet.queue import LightQueue
from kombu import Connection, Consumer, Queue
from nameko.extensions import DependencyProvider
from nameko.standalone.events import get_event_exchange
import sqlalchemy as sa
from sqlalchemy.orm import sessionmaker

from notify import use_cases
from notify.commands import ClaimDeliveries, RecordOutcomes
from notify.dependencies import build_channels, build_settings
from notify.domain.model import Outcome, Status
from notify.messagebus import DELIVERY_EVENT_TYPES, MessageBus
from notify.unit_of_work import SqlUnitOfWork
from portal_shared.config import get_int, get_str
from portal_shared.db import UnitOfWork, create_db_engine
from portal_shared.logs import get_logger

log = get_logger(__name__)

CHANNELS = ("sms", "email")


def delivery_queue(service_name, channel):
    exchange = get_event_exchange(service_name, {})
    return Queue(f"{service_name}.delivery.{channel}", exchange=exchange,
                 routing_key=DELIVERY_EVENT_TYPES[channel], durable=True)


class ChannelWorker:
    """Consumer, claimer, senders and recorder of one channel (see the module docstring)."""

    reconnect_seconds = 1.0
    drain_seconds = 1.0
    stop_timeout = 10.0

    def __init__(self, channel, sender, queue, amqp_uri, uow_factory, settings, concurrency, batch_size,
                 heartbeat=30):
        self.channel, self.sender, self.queue = channel, sender, queue
        self.amqp_uri, self.uow_factory, self.settings = amqp_uri, uow_factory, settings
        self.concurrency, self.batch_size, self.heartbeat = concurrency, batch_size, heartbeat
        self.pool = eventlet.GreenPool(concurrency)
        self._arrived = LightQueue()   # (message, Delivery) from the broker
        self._finished = LightQueue()  # (message, Claimed, Outcome) from the senders
        self._running = False
        self._stopped = Event()
        self.connection = None
        self.in_flight = 0
        # one unit of work (one session) per green thread that writes
        self._claims = MessageBus(uow_factory(), settings=settings)
        self._outcomes = MessageBus(uow_factory(), settings=settings)

    # -- threads -------------------------------------------------------------
    def run_consumer(self):
        """Consume the channel's queue until stopped; reconnect after a broker outage."""
        while self._running:
            try:
                with Connection(self.amqp_uri, heartbeat=self.heartbeat) as connection:
                    self.connection = connection
                    channel = connection.channel()
                    consumer = Consumer(channel, queues=[self.queue], callbacks=[self._on_message],
                                        accept=["json"], prefetch_count=self.concurrency)
                    consumer.consume()
                    log.info("delivery_consumer_started", channel=self.channel, queue=self.queue.name,
                             prefetch=self.concurrency)
                    while self._running:
                        try:
                            connection.drain_events(timeout=self.drain_seconds)
                        except TimeoutError:
                            pass
                        connection.heartbeat_check()
                    # stopping: take nothing more, let what we hold be sent, recorded and acknowledged
                    consumer.cancel()
                    deadline = time.monotonic() + self.stop_timeout
                    while self.in_flight and time.monotonic() < deadline:
                        eventlet.sleep(0.05)
            except Exception as exc:  # broker away: messages stay queued; unacked ones are redelivered
                if self._running:
                    log.warning("delivery_consumer_failed", channel=self.channel, error=str(exc)[:300])
                    eventlet.sleep(self.reconnect_seconds)
            finally:
                self.connection = None
        self._stopped.send(True)

    def _on_message(self, body, message):
        try:
            delivery = use_cases.Delivery(str(body["notification_id"]), int(body["attempts"]),
                                          bool(message.delivery_info.get("redelivered")))
        except (KeyError, TypeError, ValueError):
            log.error("delivery_message_malformed", channel=self.channel)
            message.ack()  # nothing can ever be done with it; the timer still finds any row left behind
            return
        self.in_flight += 1
        self._arrived.put((message, delivery))

    def run_claimer(self):
        """Claim whatever has arrived in one statement, then hand each claimed message to the pool."""
        while self._running or not self._arrived.empty():
            batch = self._take(self._arrived)
            if not batch:
                continue
            try:
                claimed = self._claims.handle(ClaimDeliveries(tuple(delivery for _, delivery in batch)))
            except Exception as exc:  # database away: give the messages back to the broker, try again later
                log.warning("delivery_claim_failed", channel=self.channel, error=str(exc)[:300], messages=len(batch))
                for message, _ in batch:
                    self._settle(message, requeue=True)
                eventlet.sleep(self.reconnect_seconds)
                continue
            for message, delivery in batch:
                item = claimed.pop(delivery.notification_id, None)
                if item is None:  # sent already, another consumer has it, or a stale duplicate
                    self._settle(message)
                else:
                    self.pool.spawn_n(self._send, message, item)

    def _send(self, message, claimed):
        try:
            outcome = self.sender.send(claimed.message)
        except Exception as exc:  # a bug or an unexpected library error must not leave the row stuck
            log.exception("notification_attempt_crashed", notification_id=claimed.message.id)
            outcome = Outcome(Status.TEMPORARY_FAILURE, None, None, f"{type(exc).__name__}: {exc}"[:500])
        self._finished.put((message, claimed, outcome))

    def run_recorder(self):
        """Record finished outcomes in one statement, then acknowledge their messages."""
        while self._running or self.in_flight:
            batch = self._take(self._finished)
            if not batch:
                continue
            while True:
                try:
                    self._outcomes.handle(RecordOutcomes(tuple((claimed, outcome) for _, claimed, outcome in batch)))
                    break
                except Exception as exc:  # keep the outcomes and the messages; retry until the database answers
                    log.warning("delivery_record_failed", channel=self.channel, error=str(exc)[:300])
                    if not self._running:
                        return  # unacknowledged: redelivered to the next consumer, whose claim takes over
                    eventlet.sleep(self.reconnect_seconds)
            for message, _, _ in batch:
                self._settle(message)

    # -- helpers ---------------------------------------------------------------
    def _take(self, queue):
        """Everything waiting in ``queue`` (at most ``batch_size``), blocking up to a second for the first."""
        try:
            items = [queue.get(timeout=1.0)]
        except eventlet.queue.Empty:
            return []
        while len(items) < self.batch_size:
            try:
                items.append(queue.get_nowait())
            except eventlet.queue.Empty:
                break
        return items

    def _settle(self, message, requeue=False):
        self.in_flight -= 1
        if message.channel is None or message.channel.connection is None:
            return  # connection gone: the broker has put the message back already
        try:
            message.requeue() if requeue else message.ack()
        except Exception as exc:  # connection closing under us: the broker redelivers, the claim sorts it out
            log.info("delivery_ack_failed", channel=self.channel, error=str(exc)[:200])

    def start(self, spawn):
        self._running = True
        for target, name in ((self.run_consumer, "consumer"), (self.run_claimer, "claimer"),
                             (self.run_recorder, "recorder")):
            spawn(target, f"delivery_{self.channel}_{name}")

    def stop(self):
        """Stop taking messages, let sends under way finish and record them (bounded), then disconnect."""
        self._running = False
        self._stopped.wait()
        self._claims.uow.close()
        self._outcomes.uow.close()


def pipeline_engine(url, concurrency):
    """The pipeline's engine: on PostgreSQL a small pool without a ping per checkout (the claimer and
    the recorder of each channel hold at most one connection each; a dead connection fails one
    transaction, whose messages go back to the broker, and the pool replaces it)."""
    if not url.startswith("postgresql"):
        return create_db_engine(url)
    parsed = sa.engine.make_url(url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg2")
    return sa.create_engine(parsed, pool_size=2 * len(concurrency), max_overflow=0, pool_recycle=600)


class DeliveryPipeline(DependencyProvider):
    """Runs one ``ChannelWorker`` per channel next to the service; see the module docstring."""

    def __init__(self):
        self.workers = {}

    def setup(self):
        config = self.container.config
        self.channels = build_channels(config)
        self.settings = build_settings(config)
        self.amqp_uri = config["AMQP_URI"]
        service_name = self.container.service_name
        self.queues = {channel: delivery_queue(service_name, channel) for channel in CHANNELS}
        # declared before anything is published: a message to an unbound exchange would be dropped
        with Connection(self.amqp_uri) as connection:
            channel = connection.default_channel
            for queue in self.queues.values():
                queue(channel).declare()
        self.concurrency = {
            "sms": get_int(config, "NOTIFY_SMS_CONCURRENCY", 32),
            "email": get_int(config, "NOTIFY_EMAIL_CONCURRENCY", 8),
        }
        self.batch_size = get_int(config, "NOTIFY_BATCH_SIZE", 50)
        self.heartbeat = get_int(config, "HEARTBEAT", 30)
        # its own engine: a delivery backlog never takes the connections RPC and event handlers need
        self.engine = pipeline_engine(get_str(config, "DATABASE_URL"), self.concurrency)
        self.sessionmaker = sessionmaker(bind=self.engine, expire_on_commit=False)

    def _uow(self):
        return SqlUnitOfWork(UnitOfWork(self.sessionmaker, None))

    def start(self):
        for channel in CHANNELS:
            worker = ChannelWorker(channel, self.channels[channel], self.queues[channel], self.amqp_uri, self._uow,
                                   self.settings, self.concurrency[channel], self.batch_size, self.heartbeat)
            self.workers[channel] = worker
            worker.start(lambda target, identifier: self.container.spawn_managed_thread(target, identifier=identifier))

    def stop(self):
        for worker in self.workers.values():
            worker._running = False
        for worker in self.workers.values():
            worker.stop()
        self.channels["email"].close()
        self.engine.dispose()

    def kill(self):
        for worker in self.workers.values():
            worker._running = False
        self.engine.dispose()

    def get_dependency(self, worker_ctx):
        return self
