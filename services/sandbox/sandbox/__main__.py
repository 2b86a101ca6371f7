"""``python -m sandbox``: the HTTP fakes and the SMTP sink in one process."""
import logging
import os
import signal
import sys

from portal_shared.runtime import freeze_startup_heap

from sandbox.app import SandboxApp
from sandbox.config import Settings
from sandbox.fakes.server import make_keep_alive_server
from sandbox.guard import refusal
from sandbox.messaging import start_smtp
from sandbox.store import Store

log = logging.getLogger("sandbox")


def main():
    logging.basicConfig(level=logging.INFO, format="%(asctime)s sandbox %(levelname)s %(message)s")
    reason = refusal(os.environ)
    if reason:
        log.error("sandbox refuses to start: %s", reason)
        sys.exit(2)
    settings = Settings.from_env()
    store = Store()
    smtp = start_smtp(store, settings.smtp_host, settings.smtp_port)
    server = make_keep_alive_server(settings.http_host, settings.http_port, SandboxApp(settings, store))

    def stop(signum, frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    freeze_startup_heap()  # no 100 ms full collections under load (portal_shared.runtime)
    log.info("sandbox listening: http://%s:%s (outbox at /outbox), SMTP %s:%s, IPNs to %s",
             settings.http_host, settings.http_port, settings.smtp_host, settings.smtp_port,
             settings.payment_callback_base_url)
    sys.stdout.flush()
    try:
        server.serve_forever()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        server.server_close()
        smtp.stop()


if __name__ == "__main__":
    main()
