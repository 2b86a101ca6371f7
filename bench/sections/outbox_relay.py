"""The outbox relay alone: committed rows published and confirmed per second.

A fresh database of its own (the running services' relays must not take its rows) receives
``RELAY_EVENTS`` outbox rows in one transaction, each for one of 500 aggregates; the relay
then drains the table with ``flush()`` into the exchange ``benchrelay.events``, which has
one durable queue bound, so the broker does the work of a real event (routing and a
persistent enqueue) before it confirms. The figure counts rows marked published over the
wall time of the drain; the queue must then hold every event, and per aggregate in the
recorded order.

For comparison, in the same run, the relay as it was before pika (``NamekoPublisherRelay``:
Nameko's ``Publisher``, one confirm per message) drains ``LEGACY_EVENTS`` rows the same way.
The ratio compares the relay with the ``EventDispatcher`` ceiling measured by
``framework_ceilings`` when that section ran first.
"""
import json
import os
import time
import uuid

import pika
from nameko.amqp.publish import Publisher
from nameko.standalone.events import get_event_exchange

from portal_shared.relay import OutboxRelay
from portal_shared.schema import outbox_table
from portal_shared.testing.plugin import FreshDatabase
from portal_shared.timeutil import utcnow

NAME = "outbox_relay"
SERVICE = "benchrelay"
RELAY_EVENTS = int(os.environ.get("BENCH_RELAY_EVENTS", "20000"))
LEGACY_EVENTS = int(os.environ.get("BENCH_LEGACY_RELAY_EVENTS", "4000"))
AGGREGATES = 500


class NamekoPublisherRelay(OutboxRelay):
    """The relay before pika: Nameko's ``Publisher``, waiting for each confirm in turn."""

    def _publish(self, rows):
        exchange = get_event_exchange(self.service_name, {})
        publisher = Publisher(self.amqp_uri, use_confirms=True, serializer="json", declare=[exchange])
        for confirmed, row in enumerate(rows):
            try:
                publisher.publish(json.loads(row.body), exchange=exchange, routing_key=row.event_type,
                                  extra_headers=row.headers or {}, message_id=row.event_id)
            except Exception as exc:
                return confirmed, exc
        return len(rows), None


def _rows(count):
    now = utcnow()
    for i in range(count):
        event_id = str(uuid.uuid4())
        yield {
            "event_id": event_id, "event_type": "bench_event_recorded", "aggregate_key": f"A-{i % AGGREGATES}",
            "payload": {"event_id": event_id, "occurred_at": now.isoformat(), "aggregate": f"A-{i % AGGREGATES}",
                        "seq": i, "text": "Hồ sơ đã được tiếp nhận"},
            "headers": {"nameko.call_id_stack": [f"bench.run.{i}"]}, "created_at": now, "attempts": 0,
        }


def _declare_queue(amqp_uri):
    connection = pika.BlockingConnection(pika.URLParameters(amqp_uri))
    channel = connection.channel()
    channel.exchange_declare(f"{SERVICE}.events", "topic", durable=True)
    queue = f"bench-relay-{uuid.uuid4().hex[:6]}"
    channel.queue_declare(queue, durable=True)
    channel.queue_bind(queue, f"{SERVICE}.events", "#")
    return connection, channel, queue


def _check_order(channel, queue, expected):
    """Every event arrived, and per aggregate in the recorded order (duplicates aside)."""
    last, seen, in_order = {}, set(), True
    while True:
        method, _properties, body = channel.basic_get(queue, auto_ack=True)
        if method is None:
            break
        event = json.loads(body)
        seen.add(event["seq"])
        if event["seq"] < last.get(event["aggregate"], -1):
            in_order = False
        last[event["aggregate"]] = event["seq"]
    return len(seen) == expected and in_order


def drain(relay_class, amqp_uri, events):
    """Rows published per second by ``relay_class`` draining ``events`` fresh rows."""
    database = FreshDatabase("dossier")
    connection, channel, queue = _declare_queue(amqp_uri)
    try:
        with database.engine.begin() as db:
            db.execute(outbox_table.insert(), list(_rows(events)))
        relay = relay_class(database.engine, amqp_uri, SERVICE)
        started = time.perf_counter()
        published = 0
        while relay.pending_count():
            published += relay.flush()
        seconds = time.perf_counter() - started
        relay.amqp_uri = amqp_uri  # drops the relay's connection
        complete = _check_order(channel, queue, events)
    finally:
        channel.queue_delete(queue)
        connection.close()
        database.drop()
    return {"events": events, "published": published, "seconds": round(seconds, 2),
            "events_per_second": round(published / seconds, 1), "all_arrived_in_aggregate_order": complete}


def run(stack, args):
    before = drain(NamekoPublisherRelay, stack.amqp_uri, LEGACY_EVENTS)
    after = drain(OutboxRelay, stack.amqp_uri, RELAY_EVENTS)
    dispatcher = getattr(stack, "ceilings", {}).get("event_dispatcher")
    ratio = round(after["events_per_second"] / dispatcher, 2) if dispatcher else None
    result = {
        "before_nameko_publisher": before,
        "pika_relay": after,
        "speedup_over_before": round(after["events_per_second"] / before["events_per_second"], 2),
        "ratio_to_event_dispatcher": ratio,
        "table": [
            ("relay before (Nameko Publisher, one confirm per message), events/s", before["events_per_second"],
             "—"),
            ("relay on pika, events published and confirmed /s", after["events_per_second"],
             "≥ 5× EventDispatcher"),
            ("relay on pika ÷ EventDispatcher", ratio, "≥ 5"),
        ],
    }
    return result
