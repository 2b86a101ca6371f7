"""The Nameko part of ``portal_shared``: extensions a service class declares.

- ``database.Database``: engine, migrations, a unit of work per worker, with
  the outbox relay (``relay.OutboxRelayExtension``) as its sub-extension;
- ``logs.WorkerLogContext``: call id and entrypoint on every line of a worker;
- ``events.reliable_event_handler``: retries with back-off, then a dead-letter queue;
- ``timer.config_timer``: a timer whose interval comes from the config;
- ``health``: ``Monitoring`` and ``/healthz``, ``/readyz``, ``/metrics``;
- ``web``: the guarded HTTP listener and its ``http`` / ``callback`` / ``probe`` entrypoints;
- ``rpc.rpc``: the authenticated RPC entrypoint; ``auth``: ``CallerIdentity``, ``ServiceRpcProxy``;
- ``background.BackgroundLoop``: a provider with one loop in a managed thread;
- ``grouping.GroupCommits``: concurrent workers' transactions run as one (group commit).

Everything here is built on the framework-free core (the modules one level
up), which command-line tools use without importing Nameko or eventlet.
"""
