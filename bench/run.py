"""``make bench``: start the Procfile's processes on fresh databases and a fresh vhost, with the sandbox
fakes, run every registered bench section in one run, print one JSON object and a table.

Sections live in ``bench/sections/`` as modules with ``NAME`` and ``run(stack, args) -> dict``; each
returns its figures plus a ``table`` list of ``(figure, value, goal)`` rows. Add a module and list it
in ``SECTIONS`` to put more figures into the same run.

    .venv/bin/python bench/run.py                      # every section
    .venv/bin/python bench/run.py --only notify_latency --dossiers 1000 --rate 100
"""
import eventlet

eventlet.monkey_patch()

import argparse  # noqa: E402
import importlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import secrets  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SECTIONS = ["notify_latency", "framework_ceilings", "outbox_relay", "submit_accept_pay", "ipn", "dossier_drain"]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", help="run only this section (repeatable)")
    parser.add_argument("--dossiers", type=int, default=1000, help="accepted dossiers (notify_latency)")
    parser.add_argument("--rate", type=float, default=100.0, help="accepts per second (notify_latency)")
    parser.add_argument("--paid-dossiers", type=int, default=600,
                        help="paid dossiers (submit_accept_pay, then ipn and dossier_drain)")
    parser.add_argument("--drain-backlog", type=int, default=200,
                        help="paid dossiers whose events dossier_drain lets pile up, then drains (of --paid-dossiers)")
    parser.add_argument("--replicas", type=int, default=1, help="processes of each service")
    parser.add_argument("--keep-logs", action="store_true", help="print where the process logs are kept")
    parser.add_argument("--profile", metavar="DIR",
                        help="py-spy processes during the ipn section into DIR (bench/README.md)")
    parser.add_argument("--profile-services", default="payment",
                        help="comma-separated services to record with --profile (default payment; 'all')")
    parser.add_argument("--json-out", help="also write the JSON object to this file")
    return parser.parse_args(argv)


def load_average():
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except OSError:
        return None


def sections_to_run(only):
    """``only`` (or every section) in ``SECTIONS`` order, with the sections they need (``REQUIRES``) first."""
    wanted = set(only or SECTIONS)
    for name in list(wanted):
        wanted.update(getattr(importlib.import_module(f"bench.sections.{name}"), "REQUIRES", ()))
    return [name for name in SECTIONS if name in wanted] + sorted(wanted - set(SECTIONS))


def main(argv=None):
    args = parse_args(argv)
    sections = sections_to_run(args.only)
    from portal_shared.runtime import freeze_startup_heap
    from portal_shared.testing.plugin import DEFAULT_AMQP_URI, FreshDatabase
    from tests.e2e.harness import SERVICES, Stack, Vhost

    amqp_uri = os.environ.get("AMQP_URI") or DEFAULT_AMQP_URI
    # Caller tokens (CONTRACT section 5): the processes inherit this run's own signing key.
    os.environ.setdefault("AUTH_JWT_SECRET", secrets.token_hex(32))
    # payment signs its events for dossier (no confirming get_payment per payment_succeeded)
    os.environ.setdefault("PAYMENT_EVENT_KEY", secrets.token_hex(32))
    api_uri = os.environ.get("RABBIT_API_URI") or "http://guest:guest@127.0.0.1:15672"
    started = time.time()
    databases = {service: FreshDatabase(service) for service in SERVICES}
    vhost = Vhost(amqp_uri, api_uri)
    log_dir = Path(tempfile.mkdtemp(prefix="bench-"))
    # every timer at its production default: the e2e harness's short ones (a relay sweep every 0.5 s,
    # payment querying every pending payment at the fake VNPay every second, ...) are a load no deployment has
    stack = Stack(vhost.amqp_uri, databases, log_dir, replicas=args.replicas, fast_timers=False)
    result = {"machine": {"cpus": os.cpu_count(), "load_average_before": load_average()},
              "replicas": args.replicas}
    try:
        stack.start(timeout=120)
        freeze_startup_heap()  # the measuring client's own collections must not pause its clocks
        for name in sections:
            module = importlib.import_module(f"bench.sections.{name}")
            section_started = time.time()
            result[name] = module.run(stack, args)
            result[name]["wall_seconds"] = round(time.time() - section_started, 1)
            stack.check_alive()
    finally:
        stack.stop()
        vhost.delete()
        for database in databases.values():
            database.drop()
    result["machine"]["load_average_after"] = load_average()
    result["wall_seconds"] = round(time.time() - started, 1)
    if args.keep_logs:
        result["logs"] = str(log_dir)
    tables = {name: result[name].pop("table", []) for name in sections}
    document = json.dumps(result, indent=1, sort_keys=True)
    print(document)
    if args.json_out:
        Path(args.json_out).write_text(document + "\n")
    print()
    print("| section | figure | value | goal |")
    print("|---|---|---|---|")
    for name, rows in tables.items():
        for figure, value, goal in rows:
            print(f"| {name} | {figure} | {value} | {goal} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
