"""The outbox relay on its own: publish order, confirms, pruning."""
import json
from datetime import timedelta

import sqlalchemy as sa
from kombu import Connection, Exchange, Queue
from sqlalchemy.orm import Session

from portal_shared.outbox import new_event, outbox_row, record_events
from portal_shared.relay import OutboxRelay
from portal_shared.schema import outbox_table
from portal_shared.timeutil import utcnow


def test_relay_publishes_in_order_like_nameko_and_prunes_old_rows(rabbit_config, fresh_database):
    database = fresh_database("dossier")
    database.truncate()
    queue = Queue("outbox-probe", Exchange("dossier.events", type="topic", durable=True),
                  routing_key="dossier_status_changed", durable=False, auto_delete=False)
    with Connection(rabbit_config["AMQP_URI"]) as connection:
        queue(connection.default_channel).declare()
    with Session(database.engine) as session, session.begin():
        for number in range(5):
            record_events(session, [outbox_row("dossier_status_changed", new_event(n=number), aggregate_key="D-1")])

    relay = OutboxRelay(database.engine, rabbit_config["AMQP_URI"], "dossier", retention_hours=1)
    assert relay.flush() == 5
    assert relay.pending_count() == 0
    received = []
    with Connection(rabbit_config["AMQP_URI"]) as connection:
        channel = connection.default_channel
        while (message := channel.basic_get("outbox-probe", no_ack=True)) is not None:
            received.append(message)
    assert [json.loads(m.body)["n"] for m in received] == [0, 1, 2, 3, 4]
    assert received[0].properties["content_type"] == "application/json"
    assert received[0].properties["delivery_mode"] == 2

    assert relay.prune() == 0  # just published: kept
    assert relay.prune(now=utcnow() + timedelta(hours=2)) == 5
    with database.engine.connect() as connection:
        assert connection.execute(sa.select(sa.func.count()).select_from(outbox_table)).scalar_one() == 0
    relay.close()


def test_inbox_claims_past_their_retention_are_pruned(fresh_database):
    from datetime import timedelta

    import sqlalchemy as sa

    from portal_shared.inbox import prune_inbox
    from portal_shared.schema import inbox_table
    from portal_shared.timeutil import utcnow

    database = fresh_database("dossier")
    database.truncate()
    now = utcnow()
    with database.engine.begin() as connection:
        connection.execute(inbox_table.insert(), [
            {"consumer": "c", "event_id": "old", "received_at": now - timedelta(days=31)},
            {"consumer": "c", "event_id": "recent", "received_at": now - timedelta(days=29)},
        ])
    assert prune_inbox(database.engine, timedelta(days=30), now=now) == 1
    with database.engine.connect() as connection:
        assert connection.execute(sa.select(inbox_table.c.event_id)).scalars().all() == ["recent"]
