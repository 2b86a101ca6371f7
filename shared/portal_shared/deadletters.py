"""Operator command for parked events: ``portal-deadletters list|replay``.

    portal-deadletters list                      # every *.dlq queue of the vhost
    portal-deadletters list --queue Q.dlq        # one queue, message by message
    portal-deadletters replay --queue Q.dlq      # move all back to their handler
    portal-deadletters replay --queue Q.dlq --event-id ID

The broker is ``AMQP_URI``; queues are found through the RabbitMQ management
API (``RABBIT_API_URI``, default: the broker host on port 15672, same user).
Replayed messages start again with a fresh attempt count. A parked message
carries the headers below, written by the reliable event handler
(``portal_shared.extensions.events``).
"""
import argparse
import json
import sys
from urllib.parse import quote, urlparse

import requests
from kombu import Connection

from portal_shared.config import env_or
from portal_shared.masking import mask_text

DEFAULT_AMQP_URI = "amqp://guest:guest@localhost:5672/"
ATTEMPTS_HEADER = "x-portal-attempts"
ERROR_HEADER = "x-portal-error"
ORIGIN_HEADER = "x-portal-origin-queue"


def management_uri(amqp_uri):
    parts = urlparse(amqp_uri)
    return env_or("RABBIT_API_URI") or f"http://{parts.username or 'guest'}:{parts.password or 'guest'}@{parts.hostname}:15672"


def vhost_of(amqp_uri):
    path = urlparse(amqp_uri).path.lstrip("/")
    return path or "/"


def dead_letter_queues(amqp_uri):
    """Names and depths of the vhost's dead-letter queues."""
    api = urlparse(management_uri(amqp_uri))
    base = f"{api.scheme}://{api.hostname}:{api.port or 15672}"
    response = requests.get(
        f"{base}/api/queues/{quote(vhost_of(amqp_uri), safe='')}",
        auth=(api.username or "guest", api.password or "guest"),
        timeout=10,
    )
    response.raise_for_status()
    return sorted((q["name"], q.get("messages", 0)) for q in response.json() if q["name"].endswith(".dlq"))


def _drain(channel, queue_name):
    while True:
        message = channel.basic_get(queue_name, no_ack=False)
        if message is None:
            return
        yield message


def describe(message):
    headers = message.headers or {}
    try:
        body = json.loads(message.body)
    except (TypeError, ValueError):
        body = {}
    return {
        "event_id": body.get("event_id") if isinstance(body, dict) else None,
        "origin_queue": headers.get(ORIGIN_HEADER),
        "attempts": headers.get(ATTEMPTS_HEADER),
        "error": mask_text(str(headers.get(ERROR_HEADER, ""))),
    }


def list_queue(amqp_uri, queue_name, out):
    with Connection(amqp_uri) as connection:
        channel = connection.channel()
        count = 0
        for message in _drain(channel, queue_name):
            count += 1
            out.write(json.dumps(describe(message), ensure_ascii=False) + "\n")
        channel.close()  # unacknowledged messages go back to the queue
    return count


def replay_queue(amqp_uri, queue_name, event_id=None, out=sys.stdout):
    """Move parked messages back to the queue they came from; return how many."""
    replayed = 0
    with Connection(amqp_uri, transport_options={"confirm_publish": True}) as connection:
        channel = connection.channel()
        producer = connection.Producer(channel=channel)
        for message in _drain(channel, queue_name):
            info = describe(message)
            if event_id and info["event_id"] != event_id:
                continue
            origin = info["origin_queue"] or queue_name[: -len(".dlq")]
            headers = {k: v for k, v in (message.headers or {}).items() if not k.startswith("x-portal-")}
            producer.publish(
                message.body,
                exchange="",
                routing_key=origin,
                headers=headers,
                content_type=message.content_type,
                content_encoding=message.content_encoding,
                delivery_mode=2,
            )
            channel.basic_ack(message.delivery_tag)
            replayed += 1
            out.write(f"replayed {info['event_id']} -> {origin}\n")
        channel.close()
    return replayed


def main(argv=None):
    parser = argparse.ArgumentParser(prog="portal-deadletters", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["list", "replay"])
    parser.add_argument("--queue", help="a dead-letter queue (name ends in .dlq)")
    parser.add_argument("--event-id", help="replay only this event")
    parser.add_argument("--amqp-uri", default=env_or("AMQP_URI", DEFAULT_AMQP_URI))
    args = parser.parse_args(argv)

    if args.queue and not args.queue.endswith(".dlq"):
        parser.error("--queue must name a dead-letter queue (ending in .dlq)")
    if args.command == "list" and not args.queue:
        for name, depth in dead_letter_queues(args.amqp_uri):
            print(f"{depth:8d}  {name}")
        return 0
    queues = [args.queue] if args.queue else [name for name, depth in dead_letter_queues(args.amqp_uri) if depth]
    for queue_name in queues:
        if args.command == "list":
            list_queue(args.amqp_uri, queue_name, sys.stdout)
        else:
            count = replay_queue(args.amqp_uri, queue_name, args.event_id)
            print(f"{queue_name}: {count} replayed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
