"""Event handlers that never lose a message.

Nameko's ``@event_handler`` acknowledges a message whose handler raised (its
default ``requeue_on_error=False``), so the event is gone. ``reliable_event_handler``
instead republishes a failed message, with publisher confirms, to a retry
queue whose TTL dead-letters it back to the handler's queue after a back-off;
after ``max_attempts`` the message is parked in ``<queue>.dlq`` for an
operator (``portal-deadletters list|replay``). The original is acknowledged
only once its copy is confirmed.
"""
import traceback

from kombu import Connection, Queue
from nameko.amqp.publish import get_producer
from nameko.events import EventHandler

from portal_shared.logs import get_logger

log = get_logger(__name__)

ATTEMPTS_HEADER = "x-portal-attempts"
ERROR_HEADER = "x-portal-error"
ORIGIN_HEADER = "x-portal-origin-queue"


class ParkEvent(Exception):
    """Raised by a handler for an event that must not be applied, ever (a forged or unconfirmed one):
    the message goes straight to the dead-letter queue with this reason, without retries."""


def retry_queue_name(queue_name):
    return f"{queue_name}.retry"


def dead_letter_queue_name(queue_name):
    return f"{queue_name}.dlq"


def declare_side_queues(queue_name):
    """The retry queue (TTL back into ``queue_name``) and the dead-letter queue."""
    retry = Queue(
        retry_queue_name(queue_name),
        durable=True,
        queue_arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": queue_name},
    )
    parked = Queue(dead_letter_queue_name(queue_name), durable=True)
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
        self.retry_queue, self.dead_letter_queue = declare_side_queues(self.queue.name)
        # Declared up front so operators see the dead-letter queue before anything is parked.
        with Connection(self.amqp_uri) as connection:
            channel = connection.default_channel
            for queue in (self.retry_queue, self.dead_letter_queue):
                queue(channel).declare()

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
                exchange="",
                routing_key=target.name,
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
