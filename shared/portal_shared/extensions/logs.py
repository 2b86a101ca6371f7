"""A worker's logger: every line of a worker carries its call id and entrypoint."""
import structlog
from nameko.extensions import DependencyProvider

from portal_shared.logs import configure_logging


class WorkerLog:
    """A worker's logger that also knows the worker's call-id stack.

    The stack travels with the events the worker causes (outbox headers), so a
    consumer's log lines can be traced back to the call that caused them.
    """

    def __init__(self, logger, call_id_stack):
        self._logger = logger
        self.call_id_stack = list(call_id_stack or [])

    def __getattr__(self, name):
        return getattr(self._logger, name)


class WorkerLogContext(DependencyProvider):
    """Configures logging at start-up and binds call id and entrypoint per worker.

    Nameko runs each worker in its own green thread, and greenlets carry their
    own context variables, so the binding never leaks between workers.
    """

    def setup(self):
        configure_logging()

    def get_dependency(self, worker_ctx):
        return WorkerLog(structlog.get_logger(self.container.service_name), worker_ctx.call_id_stack)

    def worker_setup(self, worker_ctx):
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(
            service=self.container.service_name,
            call_id=worker_ctx.call_id,
            entrypoint=worker_ctx.entrypoint.method_name,
        )

    def worker_teardown(self, worker_ctx):
        structlog.contextvars.clear_contextvars()
