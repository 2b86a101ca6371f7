"""Common library of the public-service portal backend.

The modules here are the framework-free core: the engine factory and unit of
work, migrations, the transactional outbox (``record_events``) and its relay,
the consumer inbox, logging setup with masking, configuration, time,
validation, phone numbers, caller tokens. Importing them loads neither Nameko
nor eventlet, so the command-line tools use them directly.

``portal_shared.extensions`` is the Nameko part built on them: the
``Database`` provider, the relay's extension, worker log context, reliable
event handlers, the config-driven timer, health, web, RPC and auth providers.
"""
