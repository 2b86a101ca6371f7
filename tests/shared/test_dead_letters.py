"""A handler that keeps failing ends in the dead-letter queue and comes back on replay."""
import io

from amqp.exceptions import ChannelError
from kombu import Connection
from nameko.standalone.events import event_dispatcher

from portal_shared import deadletters
from portal_shared.extensions.events import reliable_event_handler
from tests.helpers import wait_for

QUEUE = "evt-dossier-dossier_status_changed--flaky.handle"


class Flaky:
    name = "flaky"
    broken = True
    attempts = []
    handled = []

    @reliable_event_handler("dossier", "dossier_status_changed")
    def handle(self, payload):
        Flaky.attempts.append(payload["event_id"])
        if Flaky.broken:
            raise RuntimeError("downstream is down")
        Flaky.handled.append(payload["event_id"])


def queue_depth(rabbit_config, name):
    """Messages ready in a queue, asked of the broker itself (the management API lags)."""
    with Connection(rabbit_config["AMQP_URI"]) as connection:
        try:
            return connection.default_channel.queue_declare(name, passive=True).message_count
        except ChannelError:
            return 0


def test_the_operator_command_lists_dead_letter_queues(container_factory, shared_config, rabbit_config):
    container_factory(Flaky, shared_config).start()
    queues = dict(deadletters.dead_letter_queues(shared_config["AMQP_URI"]))
    assert QUEUE + ".dlq" in queues


def test_failing_handler_is_retried_then_parked_then_replayed(container_factory, shared_config, rabbit_config):
    Flaky.broken, Flaky.attempts[:], Flaky.handled[:] = True, [], []
    container_factory(Flaky, shared_config).start()
    event_dispatcher(shared_config)("dossier", "dossier_status_changed", {"event_id": "ev-1", "new_status": "x"})

    wait_for(lambda: len(Flaky.attempts) == 3, message="three attempts")
    wait_for(lambda: queue_depth(rabbit_config, QUEUE + ".dlq") == 1, message="message parked")
    assert Flaky.handled == []

    listing = io.StringIO()
    assert deadletters.list_queue(shared_config["AMQP_URI"], QUEUE + ".dlq", listing) == 1
    assert '"event_id": "ev-1"' in listing.getvalue() and "downstream is down" in listing.getvalue()
    assert queue_depth(rabbit_config, QUEUE + ".dlq") == 1  # listing leaves it parked

    Flaky.broken = False
    assert deadletters.replay_queue(shared_config["AMQP_URI"], QUEUE + ".dlq", out=io.StringIO()) == 1
    wait_for(lambda: Flaky.handled == ["ev-1"], message="replayed event handled")
    assert queue_depth(rabbit_config, QUEUE + ".dlq") == 0
