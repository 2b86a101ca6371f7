"""structlog set-up shared by every service.

One JSON object a line (``LOG_FORMAT=json``, the default) or a console
rendering; standard-library log records (Nameko's own, kombu's) go through the
same processors, so masking applies to them too. Inside a worker every line
carries the Nameko call id and the entrypoint (see ``WorkerLogContext``).
"""
import logging
import os
import sys

import structlog
from nameko.extensions import DependencyProvider

from portal_shared.masking import mask_event

_configured = False


def configure_logging(level=None, fmt=None, stream=None, force=False):
    """Configure structlog and the standard library once per process."""
    global _configured
    if _configured and not force:
        return
    level = (level or os.environ.get("LOG_LEVEL") or "INFO").upper()
    fmt = (fmt or os.environ.get("LOG_FORMAT") or "json").lower()

    shared_processors = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        mask_event,
    ]
    if fmt == "console":
        renderer = structlog.dev.ConsoleRenderer(colors=False)
    else:
        renderer = structlog.processors.JSONRenderer(ensure_ascii=False)

    structlog.configure(
        processors=shared_processors + [structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.ExtraAdder()] + shared_processors,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    containers = logging.getLogger("nameko.containers")
    if not any(isinstance(f, ExpectedErrorsWithoutTraceback) for f in containers.filters):
        containers.addFilter(ExpectedErrorsWithoutTraceback())
    for noisy in ("amqp", "kombu", "urllib3"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    _configured = True


class ExpectedErrorsWithoutTraceback(logging.Filter):
    """Nameko logs an entrypoint's expected exception (``NoPaymentDue``, ``ValidationError``) as a
    warning *with its traceback*: formatting and masking that stack cost more than the call itself,
    for an answer the caller already has. The line stays, without the stack."""

    def filter(self, record):
        if record.exc_info and str(record.msg).startswith("(expected)"):
            record.exc_info = record.exc_text = None
        return True


def get_logger(name):
    return structlog.get_logger(name)


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
