"""The outbox relay as a Nameko extension: it publishes the service's events while the container runs.

``OutboxRelayExtension`` runs ``portal_shared.relay.OutboxRelay`` in a managed
thread of the container. It is a sub-extension of ``Database`` (with
``relay_events=True``), which hands it the engine in its ``setup`` and has it
woken by every commit that recorded events. ``AMQP_URI``,
``OUTBOX_SWEEP_SECONDS`` (default 1) and ``OUTBOX_RETENTION_HOURS`` (default
168) configure it.
"""
from nameko.extensions import Extension

from portal_shared.config import get_float
from portal_shared.relay import OutboxRelay


class OutboxRelayExtension(Extension):
    """Runs the service's ``OutboxRelay`` from ``start`` until ``stop`` or ``kill``."""

    def __init__(self):
        self.relay = None

    def open(self, engine):
        """Build the relay over ``engine`` (the ``Database``'s, once created)."""
        config = self.container.config
        self.relay = OutboxRelay(
            engine,
            amqp_uri=config["AMQP_URI"],
            service_name=self.container.service_name,
            sweep_seconds=get_float(config, "OUTBOX_SWEEP_SECONDS", 1.0),
            retention_hours=get_float(config, "OUTBOX_RETENTION_HOURS", 168.0),
        )

    def start(self):
        if self.relay is not None:
            self.container.spawn_managed_thread(self.relay.run, identifier="outbox_relay")

    def stop(self):
        if self.relay is not None:
            self.relay.stop()

    def kill(self):
        self.stop()
