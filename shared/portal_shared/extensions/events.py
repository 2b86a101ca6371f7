"""Event handlers that never lose a message.

Nameko's ``@event_handler`` acknowledges a message whose handler raised (its
default ``requeue_on_error=False``), so the event is gone. ``reliable_event_handler``
instead republishes a failed message, with publisher confirms, to a retry
queue whose TTL dead-letters it back to the handler's queue after a back-off;
after ``max_attempts`` the message is parked in ``<queue>.dlq`` for an
operator (``portal-deadletters list|replay``). The original is acknowledged
only once its copy is confirmed.

The copies go through the service's own direct exchange ``<service>.retries``
(each side queue bound under its own name), never the default exchange: a
service's broker user has no write on ``amq.default``, so it cannot drop a
message into another service's queue (infra/rabbitmq/definitions.json).
"""
import traceback

from kombu import Connection, Exchange, Queue
from nameko.amqp.publish import get_producer
from nameko.events import EventHandler
from nameko.extensions import DependencyProvider

from portal_shared import event_signing
from portal_shared.deadletters import ATTEMPTS_HEADER, ERROR_HEADER, ORIGIN_HEADER
from portal_shared.logs import get_logger

log = get_logger(__name__)


class ParkEvent(Exception):
    """Raised by a handler for an event that must not be applied, ever (a forged or unconfirmed one):
    the message goes straight to the dead-letter queue with this reason, without retries."""


def retry_queue_name(queue_name):
    return f"{queue_name}.retry"


def dead_letter_queue_name(queue_name):
    return f"{queue_name}.dlq"


def retry_exchange(service_name):
    return Exchange(f"{service_name}.retries", type="direct", durable=True)


def declare_side_queues(queue_name, service_name):
    """The retry queue (TTL, then dead-lettered back into ``queue_name`` through the same exchange)
    and the dead-letter queue, bound to the service's retry exchange under their own names.

    (A deployment whose ``.retry`` queues were declared before, dead-lettering through the default
    exchange, must let them drain and delete them once: RabbitMQ refuses changed queue arguments.)"""
    exchange = retry_exchange(service_name)
    retry = Queue(
        retry_queue_name(queue_name),
        exchange=exchange,
        routing_key=retry_queue_name(queue_name),
        durable=True,
        queue_arguments={"x-dead-letter-exchange": exchange.name, "x-dead-letter-routing-key": queue_name},
    )
    parked = Queue(dead_letter_queue_name(queue_name), exchange=exchange,
                   routing_key=dead_letter_queue_name(queue_name), durable=True)
    return retry, parked


class ReliableEventHandler(EventHandler):
    """An ``EventHandler`` with bounded, delayed retries and a dead-letter queue."""

    def __init__(self, source_service, event_type, max_attempts=5, backoff_seconds=1.0, **kwargs):
        kwargs["requeue_on_error"] = False
        super().__init__(source_service, event_type, **kwargs)
        self.max_attempts = max_attempts
        self.backoff_seconds = backoff_seconds

    def setup(self):
        super().setup()
        config = self.container.config
        self.amqp_uri = config["AMQP_URI"]
        self.max_attempts = int(config.get("EVENT_MAX_ATTEMPTS", self.max_attempts))
        self.backoff_seconds = float(config.get("EVENT_RETRY_BACKOFF_SECONDS", self.backoff_seconds))
        self.retry_queue, self.dead_letter_queue = declare_side_queues(self.queue.name, self.container.service_name)
        # Declared up front so operators see the dead-letter queue before anything is parked.
        with Connection(self.amqp_uri) as connection:
            channel = connection.default_channel
            for queue in (self.retry_queue, self.dead_letter_queue):
                queue(channel).declare()
            # an expired retry comes back to the handler's queue through the service's retry exchange
            main = self.queue(channel)
            main.declare()
            main.bind_to(exchange=self.retry_queue.exchange, routing_key=self.queue.name)

    def handle_result(self, message, worker_ctx, result=None, exc_info=None):
        if exc_info is not None:
            self._retry_or_park(message, exc_info)
        self.queue_consumer.ack_message(message)
        return result, exc_info

    def _retry_or_park(self, message, exc_info):
        headers = dict(message.headers or {})
        attempts = int(headers.get(ATTEMPTS_HEADER, 0)) + 1
        headers[ATTEMPTS_HEADER] = attempts
        headers[ORIGIN_HEADER] = self.queue.name
        error = "".join(traceback.format_exception_only(exc_info[0], exc_info[1])).strip()[:1000]
        headers[ERROR_HEADER] = error
        if attempts < self.max_attempts and not isinstance(exc_info[1], ParkEvent):
            target, expiration = self.retry_queue, self.backoff_seconds * 2 ** (attempts - 1)
        else:
            target, expiration = self.dead_letter_queue, None
        with get_producer(self.amqp_uri, confirms=True) as producer:
            producer.publish(
                message.body,
                exchange=target.exchange,
                routing_key=target.routing_key,
                declare=[target],
                headers=headers,
                content_type=message.content_type,
                content_encoding=message.content_encoding,
                delivery_mode=2,
                expiration=expiration,
                retry=True,
            )
        log.warning(
            "event_handler_failed",
            queue=self.queue.name,
            attempt=attempts,
            max_attempts=self.max_attempts,
            parked=target is self.dead_letter_queue,
            error=error,
        )


reliable_event_handler = ReliableEventHandler.decorator


class EventSignatures(DependencyProvider):
    """Whether a worker's event carries its publisher's signature (``portal_shared.event_signing``).

    ``self.signatures.verified(event_type, payload)`` is True only when the key in ``variable`` is set
    and the message's ``nameko.event_signature`` header signs exactly this event; ``present`` tells a
    missing signature from a wrong one. A key too short stops start-up.
    """

    def __init__(self, variable):
        self.variable = variable

    def setup(self):
        self.key = event_signing.load_key(self.variable)
        if self.key is None:
            log.info("event_signatures_off", variable=self.variable,
                     reason="not set: every event of this kind is confirmed with its publisher")

    def get_dependency(self, worker_ctx):
        return SignatureCheck(self.key, worker_ctx.data.get(event_signing.CONTEXT_KEY))


class SignatureCheck:
    def __init__(self, key, signature):
        self.key = key
        self.signature = signature

    @property
    def present(self):
        return self.signature is not None

    def verified(self, event_type, payload):
        return event_signing.verify(self.key, event_type, payload, self.signature)
