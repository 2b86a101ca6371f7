"""The outbox relay on pika: Nameko's wire format, pipelined confirms, at least once, wake-ups."""
import json
import threading
import uuid

import eventlet
import pika
import pytest
import sqlalchemy as sa
from nameko.amqp.publish import Publisher
from nameko.standalone.events import get_event_exchange
from sqlalchemy.orm import Session

from portal_shared.outbox import new_event, outbox_row, record_events
from portal_shared.relay import OutboxRelay
from portal_shared.schema import define_messaging_tables, outbox_table
from tests.helpers import wait_for

UNREACHABLE_BROKER = "amqp://guest:guest@127.0.0.1:1/"
EVENT = "dossier_status_changed"


@pytest.fixture
def database(fresh_database):
    database = fresh_database("dossier")
    database.truncate()
    return database


@pytest.fixture
def broker(rabbit_config):
    connection = pika.BlockingConnection(pika.URLParameters(rabbit_config["AMQP_URI"]))
    channel = connection.channel()
    channel.exchange_declare("dossier.events", "topic", durable=True)
    yield channel
    connection.close()


def bind_queue(channel, arguments=None):
    name = f"probe-{uuid.uuid4().hex[:8]}"
    channel.queue_declare(name, durable=True, arguments=arguments)
    channel.queue_bind(name, "dossier.events", "#")
    return name


def drain(channel, queue):
    messages = []
    while True:
        method, properties, body = channel.basic_get(queue, auto_ack=True)
        if method is None:
            return messages
        messages.append((method, properties, body))


def record(engine, count, aggregate_key="D-1", start=0, call_id_stack=None):
    with Session(engine) as session, session.begin():
        for number in range(start, start + count):
            record_events(session, [outbox_row(EVENT, new_event(n=number, name="Nguyễn Văn An"),
                                               aggregate_key=aggregate_key, call_id_stack=call_id_stack)])


def published_flags(engine):
    with engine.connect() as connection:
        return connection.execute(
            sa.select(outbox_table.c.payload, outbox_table.c.published_at, outbox_table.c.attempts,
                      outbox_table.c.last_error).order_by(outbox_table.c.id)
        ).all()


def test_messages_are_the_bytes_and_properties_nameko_sends(rabbit_config, database, broker):
    queue = bind_queue(broker)
    record(database.engine, 1, call_id_stack=["dossier.act_on_dossier.8c1f"])
    row = published_flags(database.engine)[0]
    # what Nameko's EventDispatcher (its Publisher) sends for the same event
    Publisher(rabbit_config["AMQP_URI"], use_confirms=True, serializer="json",
              declare=[get_event_exchange("dossier", {})]).publish(
        row.payload, exchange=get_event_exchange("dossier", {}), routing_key=EVENT,
        extra_headers={"nameko.call_id_stack": ["dossier.act_on_dossier.8c1f"]}, message_id=row.payload["event_id"])

    relay = OutboxRelay(database.engine, rabbit_config["AMQP_URI"], "dossier")
    assert relay.flush() == 1
    (nameko_method, nameko_props, nameko_body), (method, props, body) = drain(broker, queue)
    assert body == nameko_body
    assert (method.exchange, method.routing_key) == (nameko_method.exchange, nameko_method.routing_key)
    assert (method.exchange, method.routing_key) == ("dossier.events", EVENT)
    assert props.__dict__ == nameko_props.__dict__
    assert props.content_type == "application/json" and props.content_encoding == "utf-8"
    assert props.delivery_mode == 2 and props.message_id == row.payload["event_id"]
    assert props.headers == {"nameko.call_id_stack": ["dossier.act_on_dossier.8c1f"]}
    relay.close()


def test_one_process_relays_at_a_time_and_another_takes_over_when_it_stops(rabbit_config, database, broker):
    """On PostgreSQL the relay that first takes the service's advisory lock keeps it for its session: the
    relays of other processes publish nothing meanwhile, and one of them leads once that session ends."""
    queue = bind_queue(broker)
    first = OutboxRelay(database.engine, rabbit_config["AMQP_URI"], "dossier", sweep_seconds=0.05)
    second = OutboxRelay(database.engine, rabbit_config["AMQP_URI"], "dossier", sweep_seconds=0.05)
    record(database.engine, 2)
    assert first.flush() == 2
    assert first.flush() == 0  # nothing left: it still leads
    record(database.engine, 2, start=2)
    eventlet.sleep(0.06)
    assert second.flush() == 0  # first leads
    assert [row.published_at is None for row in published_flags(database.engine)] == [False, False, True, True]
    first.close()
    eventlet.sleep(0.06)  # the second asks for the lock again at most once per sweep
    assert second.flush() == 2
    assert [json.loads(body)["n"] for _m, _p, body in drain(broker, queue)] == [0, 1, 2, 3]
    second.close()


def test_one_connection_carries_many_batches_with_confirms_in_flight(rabbit_config, database, broker):
    queue = bind_queue(broker)
    record(database.engine, 1200, aggregate_key="D-1")
    relay = OutboxRelay(database.engine, rabbit_config["AMQP_URI"], "dossier")
    relay.window = 200
    in_flight = []
    publish = relay._connected_publisher().publish

    def counting_publish(*args):
        tag = publish(*args)
        in_flight.append(len(relay._publisher.unconfirmed))
        return tag

    relay._publisher.publish = counting_publish
    publisher = relay._publisher
    assert relay.flush() == 1200
    record(database.engine, 5, start=1200)
    assert relay.flush() == 5
    assert relay._publisher is publisher and publisher.is_open  # the same connection throughout
    assert max(in_flight) > 1  # confirms were awaited in a window, not one by one
    assert max(in_flight) <= 200
    assert [json.loads(body)["n"] for _m, _p, body in drain(broker, queue)] == list(range(1205))
    assert relay.pending_count() == 0
    relay.close()


def test_rows_committed_while_a_batch_awaits_its_confirms_go_out_in_the_same_flush(rabbit_config, database, broker):
    """On PostgreSQL the statement that marks a confirmed batch also reads the next one: rows committed
    meanwhile (one with an id lower than a later one's, committed after it) go out in order of id, each
    once, and the flush marks every one of them."""
    queue = bind_queue(broker)
    record(database.engine, 3)
    relay = OutboxRelay(database.engine, rabbit_config["AMQP_URI"], "dossier")
    statements = []
    batches = []
    publish = relay._publish

    def publish_and_commit_more(rows):
        batches.append([json.loads(row.body)["n"] for row in rows])
        if len(batches) == 1:  # two more commits while the first batch is out
            record(database.engine, 2, start=3)
        return publish(rows)

    relay._publish = publish_and_commit_more

    def relay_statement(conn, cursor, statement, *args):
        if "outbox_messages" in statement and not statement.lstrip().startswith("INSERT"):
            statements.append(statement.lstrip().split()[0])

    sa.event.listen(database.engine, "before_cursor_execute", relay_statement)
    try:
        assert relay.flush() == 5
    finally:
        sa.event.remove(database.engine, "before_cursor_execute", relay_statement)
        relay.close()
    assert batches == [[0, 1, 2], [3, 4]]
    assert [json.loads(body)["n"] for _m, _p, body in drain(broker, queue)] == [0, 1, 2, 3, 4]
    assert all(row.published_at is not None for row in published_flags(database.engine))
    # the first read, then for each batch one statement marking it and reading the next: nothing else
    assert statements == ["SELECT", "WITH", "WITH"]


def test_stopping_marks_the_batch_under_way_and_returns(rabbit_config, database, broker):
    bind_queue(broker)
    record(database.engine, 3)
    relay = OutboxRelay(database.engine, rabbit_config["AMQP_URI"], "dossier")
    publish = relay._publish

    def publish_then_stop(rows):
        result = publish(rows)
        record(database.engine, 2, start=3)
        relay.stop()
        return result

    relay._publish = publish_then_stop
    try:
        assert relay.flush() == 3
    finally:
        relay.close()
    assert [row.published_at is not None for row in published_flags(database.engine)] == [True] * 3 + [False] * 2


def test_a_crash_between_confirm_and_mark_publishes_again(rabbit_config, database, broker):
    queue = bind_queue(broker)
    record(database.engine, 3)

    class CrashAfterConfirms(OutboxRelay):
        def _publish(self, rows):
            result = super()._publish(rows)
            raise KeyboardInterrupt("process killed after the confirms")  # before the mark commits
            return result

    crashed = CrashAfterConfirms(database.engine, rabbit_config["AMQP_URI"], "dossier")
    with pytest.raises(KeyboardInterrupt):
        crashed.flush()
    crashed.close()
    assert [row.published_at for row in published_flags(database.engine)] == [None, None, None]

    relay = OutboxRelay(database.engine, rabbit_config["AMQP_URI"], "dossier")
    assert relay.flush() == 3
    received = drain(broker, queue)
    assert [json.loads(body)["n"] for _m, _p, body in received] == [0, 1, 2, 0, 1, 2]
    assert received[0][1].message_id == received[3][1].message_id  # the consumer's inbox drops the copy
    relay.close()


def test_a_nacked_message_and_those_after_it_stay_unpublished_until_retried(rabbit_config, database, broker):
    # a queue that refuses a fourth message: the broker nacks it (and any after it)
    queue = bind_queue(broker, arguments={"x-max-length": 3, "x-overflow": "reject-publish"})
    record(database.engine, 6)
    relay = OutboxRelay(database.engine, rabbit_config["AMQP_URI"], "dossier")
    with pytest.raises(Exception, match="nack"):
        relay.flush()
    rows = published_flags(database.engine)
    assert [row.published_at is not None for row in rows] == [True, True, True, False, False, False]
    assert rows[3].attempts == 1 and "nack" in rows[3].last_error
    assert [json.loads(body)["n"] for _m, _p, body in drain(broker, queue)] == [0, 1, 2]

    assert relay.flush() == 3  # room again: the rest goes, on a new channel
    assert [json.loads(body)["n"] for _m, _p, body in drain(broker, queue)] == [3, 4, 5]
    assert relay.pending_count() == 0
    relay.close()


def test_a_lost_connection_is_replaced_and_an_unreachable_broker_keeps_the_rows(
    rabbit_config, rabbit_manager, database, broker
):
    queue = bind_queue(broker)
    record(database.engine, 2)
    relay = OutboxRelay(database.engine, rabbit_config["AMQP_URI"], "dossier")
    assert relay.flush() == 2
    vhost = rabbit_config["AMQP_URI"].rsplit("/", 1)[1]
    port = relay._publisher._connection._transport._sock.getsockname()[1]
    # the broker drops the relay's connection
    for connection in rabbit_manager.get_connections():
        if connection["vhost"] == vhost and connection["peer_port"] == port:
            rabbit_manager.delete_connection(connection["name"])
    eventlet.sleep(0.5)
    record(database.engine, 2, start=2)
    assert relay.flush() == 2  # on a new connection
    assert relay.pending_count() == 0

    relay.amqp_uri = UNREACHABLE_BROKER
    record(database.engine, 1, start=4)
    with pytest.raises(Exception):
        relay.flush()
    rows = published_flags(database.engine)
    assert rows[-1].published_at is None and rows[-1].attempts == 1 and rows[-1].last_error
    relay.amqp_uri = rabbit_config["AMQP_URI"]
    assert relay.flush() == 1
    assert sorted({json.loads(body)["n"] for _m, _p, body in drain(broker, queue)}) == [0, 1, 2, 3, 4]
    relay.close()


def test_a_commit_in_another_process_wakes_the_relay_through_notify(rabbit_config, database, broker):
    queue = bind_queue(broker)
    relay = OutboxRelay(database.engine, rabbit_config["AMQP_URI"], "dossier", sweep_seconds=60)
    relay.max_backoff_seconds = 60  # no sweep during the test: only NOTIFY can wake it
    runner = threading.Thread(target=relay.run, daemon=True)
    runner.start()
    try:
        eventlet.sleep(1.5)  # listening; the first sweep is a minute away
        other_process = sa.create_engine(database.engine.url)  # its own connections, no relay to wake
        with Session(other_process) as session, session.begin():
            record_events(session, [outbox_row(EVENT, new_event(n=1), aggregate_key="D-9")])
        with Session(other_process) as session, session.begin():
            record_events(session, [outbox_row(EVENT, new_event(n=2), aggregate_key="D-9")])
            session.rollback()  # rolled back: no row, no wake-up needed
        other_process.dispose()
        messages = wait_for(lambda: drain(broker, queue), timeout=10, message="the event, woken by NOTIFY")
        assert len(messages) == 1
    finally:
        relay.stop()
        runner.join(10)


def test_sqlite_has_no_notify_and_still_relays(rabbit_config, broker, tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path}/outbox.db")
    metadata = sa.MetaData()
    define_messaging_tables(metadata)
    metadata.create_all(engine)
    queue = bind_queue(broker)
    record(engine, 3)
    relay = OutboxRelay(engine, rabbit_config["AMQP_URI"], "dossier")
    assert relay.flush() == 3
    assert [json.loads(body)["n"] for _m, _p, body in drain(broker, queue)] == [0, 1, 2]
    relay.close()
