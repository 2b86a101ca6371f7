"""structlog set-up shared by every service.

One JSON object a line (``LOG_FORMAT=json``, the default) or a console
rendering; standard-library log records (Nameko's own, kombu's) go through the
same processors, so masking applies to them too. Inside a worker every line
carries the Nameko call id and the entrypoint
(``portal_shared.extensions.logs.WorkerLogContext``).
"""
import logging
import os
import sys

import structlog

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
    # neither renderer writes the process, thread or multiprocessing names a LogRecord looks up by default
    # (a getpid() system call and a current_thread() lookup for every line), nor the caller's file and line,
    # for which every line walks the stack (the logging module's documented switch: _srcfile = None)
    logging.logProcesses = logging.logThreads = logging.logMultiprocessing = False
    logging._srcfile = None
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
