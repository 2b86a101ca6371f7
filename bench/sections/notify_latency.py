"""Accept → SMS at the (fake) provider, free dossiers accepted at a paced rate.

Every dossier is submitted first (not measured), then accepted on a fixed schedule
(``--rate`` per second) by a pool of RPC clients, each with its own proxy. The latency of
one dossier is the time from its ``accept`` call returning (the dossier is accepted and its
event committed) to the sandbox's eSMS/SpeedSMS fake accepting the SMS; both clocks are this
machine's wall clock. The slope is a least-squares fit of latency against the time of the
accept: a queue that never drains shows as a positive slope.
"""
import itertools
import json
import os
import threading
import time
from datetime import datetime
from pathlib import Path
from urllib.parse import quote, urlparse

import eventlet
import requests
from nameko.standalone.rpc import ClusterRpcProxy

from bench.profiling import Profiler
from tests.helpers import bearer_token  # a staff caller: officer, finance and operator

NAME = "notify_latency"
PROCEDURE = "KHAISINH-01"  # free: accept → accepted → one SMS + one e-mail
CLIENTS = 32
DRAIN_TIMEOUT_SECONDS = 120


def percentile(values, fraction):
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, int(round(fraction * (len(ordered) - 1)))))
    return ordered[index]


def slope(points):
    """Least-squares slope of ``[(x, y)]``."""
    if len(points) < 2:
        return None
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    var = sum((x - mean_x) ** 2 for x, _ in points)
    if var == 0:
        return None
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / var


def applicant(i):
    return {"full_name": f"Nguyễn Văn Bench {i}", "id_number": f"{1_000_000_00000 + i:012d}",
            "phone": f"09{10_000_000 + i:08d}", "email": f"bench{i}@example.vn"}


def international(phone):
    return "84" + phone[1:]


def _pool_run(amqp_uri, count, work, clients=CLIENTS):
    """Run ``work(rpc, i)`` for i in range(count) on ``clients`` green threads, each with its own proxy."""
    counter = itertools.count()
    lock = threading.Lock()
    results = [None] * count
    errors = []

    def client():
        with ClusterRpcProxy({"AMQP_URI": amqp_uri}, context_data={"authorization": bearer_token()},
                             timeout=60) as rpc:
            while True:
                with lock:
                    i = next(counter)
                if i >= count:
                    return
                try:
                    results[i] = work(rpc, i)
                except Exception as exc:  # counted and reported, never hidden
                    errors.append(f"{i}: {type(exc).__name__}: {exc}"[:300])

    pool = eventlet.GreenPool(clients)
    for _ in range(clients):
        pool.spawn(client)
    pool.waitall()
    return results, errors


def process_cpu_seconds(pid, reaped_children=False):
    """CPU time (user + system) used so far by one process (``/proc/<pid>/stat``), with that of its
    children it has reaped when ``reaped_children`` (PostgreSQL's closed backends)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    if reaped_children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / os.sysconf("SC_CLK_TCK")


def _servers():
    """This machine's PostgreSQL (postmaster and its live backends) and RabbitMQ processes: label → pids."""
    found = {"postgresql": [], "rabbitmq": []}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            name = (entry / "comm").read_text().strip()
        except OSError:
            continue
        if name == "postgres":
            found["postgresql"].append(int(entry.name))
        elif name.startswith("beam.smp"):
            found["rabbitmq"].append(int(entry.name))
    return found


def cpu_seconds(stack, servers=False):
    """CPU time (user + system) used so far by each Procfile process, by label; with ``servers``, also by
    the local PostgreSQL and RabbitMQ (absent when they run elsewhere, e.g. in containers)."""
    used = {}
    for process in stack.processes:
        try:
            used[process.label] = process_cpu_seconds(process.popen.pid)
        except (OSError, IndexError, ValueError):
            used[process.label] = None
    used["bench_client"] = process_cpu_seconds(os.getpid())  # this process: the RPC clients and the polls
    if servers:
        for label, pids in _servers().items():
            total = 0.0
            for pid in pids:
                try:
                    total += process_cpu_seconds(pid, reaped_children=label == "postgresql")
                except (OSError, IndexError, ValueError):
                    pass  # a backend that ended meanwhile: the postmaster counts it once reaped
            if pids:
                used[label] = total
    return used


def _management(stack, collection):
    """``GET /api/<collection>/<the stack's vhost>`` of the management API, decoded."""
    parsed = urlparse(os.environ.get("RABBIT_API_URI") or "http://guest:guest@127.0.0.1:15672")
    vhost = urlparse(stack.amqp_uri).path.lstrip("/")
    url = f"{parsed.scheme}://{parsed.hostname}:{parsed.port or 15672}/api/{collection}/{quote(vhost, safe='')}"
    return requests.get(url, auth=(parsed.username or "guest", parsed.password or "guest"), timeout=10).json()


def queued_messages(stack):
    """Messages ready or unacknowledged in every queue of the stack's vhost (management API)."""
    return sum((queue.get("messages") or 0) for queue in _management(stack, "queues"))


def vhost_message_stats(stack):
    """``{"published": n, "delivered": n}`` so far in the stack's vhost (management API; its figures lag a
    few seconds: read after ``wait_idle``)."""
    stats = _management(stack, "vhosts").get("message_stats") or {}
    return {"published": stats.get("publish", 0), "delivered": stats.get("deliver_get", 0)}


def wait_idle(stack, timeout=120):
    """Until every queue of the vhost is empty twice in a row (the management figures lag a few seconds)."""
    deadline = time.time() + timeout
    quiet = 0
    while time.time() < deadline and quiet < 2:
        quiet = quiet + 1 if queued_messages(stack) == 0 else 0
        time.sleep(2.5)


def sms_messages(stack, after=0):
    """The SMS the sandbox received after message ``after`` (its outbox ids grow): the poll below asks only
    for what is new, so polling does not cost the sandbox more as its outbox grows."""
    return requests.get(f"{stack.sandbox_url}/outbox.json", params={"channel": "sms", "after": after},
                        timeout=30).json()["messages"]


def _log_times(stack, service, event, **match):
    """``{dossier_code: time}`` of the first JSON log line ``event`` (with the ``match`` fields) of each
    dossier in the logs of ``service``'s processes."""
    times = {}
    for path in sorted(Path(stack.log_dir).glob(f"{service}.*.log")):
        with open(path, encoding="utf-8", errors="replace") as lines:
            for line in lines:
                if f'"{event}"' not in line or not line.startswith("{"):
                    continue
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if record.get("event") == event and all(match_value(record.get(k)) for k, match_value in
                                                        match.items()):
                    moment = datetime.fromisoformat(record["timestamp"].replace("Z", "+00:00")).timestamp()
                    times.setdefault(record.get("dossier_code"), moment)
    return times


def stages(stack, codes, arrivals):
    """Where an accepted dossier's time goes, from the services' own log lines: the accept's commit (the
    dossier service's ``dossier_transition``) → notify's commit of the event's messages
    (``event_notifications``) → the SMS at the fake provider; beside it the same event's commit in
    portal_sync (``dossier_change_recorded``), another consumer of the same event."""
    accepted = _log_times(stack, "dossier", "dossier_transition", action=lambda value: value == "accept")
    notified = _log_times(stack, "notify", "event_notifications", created=lambda value: bool(value))
    recorded = _log_times(stack, "portal_sync", "dossier_change_recorded", status=lambda value: value == "accepted")
    sms = {codes[i]: min(times) for i, times in arrivals.items() if codes[i] is not None}

    def spread(pairs):
        values = [end - start for start, end in pairs]
        return {"n": len(values), "p50": _ms(percentile(values, 0.5)), "p90": _ms(percentile(values, 0.9)),
                "p99": _ms(percentile(values, 0.99))}

    return {
        "accept_commit_to_notify_commit": spread((accepted[c], notified[c]) for c in accepted if c in notified),
        "accept_commit_to_portal_sync_commit": spread((accepted[c], recorded[c]) for c in accepted if c in recorded),
        "notify_commit_to_sms": spread((notified[c], sms[c]) for c in notified if c in sms),
    }


def _ms(value):
    return None if value is None else round(value * 1000, 1)


def run(stack, args):
    count, rate = args.dossiers, args.rate
    amqp_uri = stack.amqp_uri

    submit_started = time.time()
    codes, submit_errors = _pool_run(
        amqp_uri, count, lambda rpc, i: rpc.dossier.submit_dossier(PROCEDURE, applicant(i))["code"])
    submit_seconds = time.time() - submit_started
    wait_idle(stack)  # the submitted events are consumed: measure the accepts alone

    profile_dir = getattr(args, "profile", None)
    profiler = Profiler(stack, profile_dir and str(Path(profile_dir) / NAME), getattr(args, "profile_services", "payment"))
    before_accepts = max((m["id"] for m in sms_messages(stack)), default=0)  # the submits' SMS: not polled again
    cpu_before = cpu_seconds(stack, servers=True)
    start_at = time.time() + 1.0
    lateness = []

    def accept(rpc, i):
        scheduled = start_at + i / rate
        delay = scheduled - time.time()
        if delay > 0:
            eventlet.sleep(delay)
        called = time.time()
        lateness.append(called - scheduled)
        rpc.dossier.act_on_dossier(codes[i], "accept", "bench")
        return scheduled, called, time.time()

    accepts, accept_errors = _pool_run(amqp_uri, count, accept)
    accept_window = max(a[2] for a in accepts if a) - min(a[1] for a in accepts if a)
    call_times = [returned - called for _, called, returned in filter(None, accepts)]

    by_phone = {international(applicant(i)["phone"]): i for i in range(count)}
    wanted = {i for i in range(count) if accepts[i]}
    deadline = time.time() + DRAIN_TIMEOUT_SECONDS
    messages, seen, last_id = [], set(), before_accepts
    while True:
        new = [m for m in sms_messages(stack, after=last_id) if m["id"] > last_id]  # (a sandbox without ?after)
        messages += new
        last_id = max([last_id] + [m["id"] for m in new])
        seen |= {by_phone.get(m["to"]) for m in new if "tiep nhan" in (m["text"] or "")}
        if wanted <= seen or time.time() > deadline:
            break
        time.sleep(1.0)

    arrivals = {}
    for message in messages:
        i = by_phone.get(message["to"])
        if i is None or "tiep nhan" not in (message["text"] or ""):
            continue
        arrivals.setdefault(i, []).append(datetime.fromisoformat(message["at"]).timestamp())
    latencies, from_schedule, points = [], [], []
    for i in sorted(wanted):
        if i not in arrivals:
            continue
        scheduled, called, returned = accepts[i]
        first = min(arrivals[i])
        latencies.append(first - returned)
        from_schedule.append(first - scheduled)
        points.append((returned - start_at, first - returned))
    cpu_after = cpu_seconds(stack)
    profiles = profiler.stop()
    cpu_ms_per_dossier = {label: round((cpu_after[label] - cpu_before[label]) * 1000 / max(1, len(wanted)), 2)
                          for label in cpu_before if cpu_before[label] is not None and cpu_after.get(label) is not None}
    duplicates = sum(1 for times in arrivals.values() if len(times) > 1)
    missing = len(wanted - set(arrivals))
    # The whole cost of an accept: every process's CPU until the broker's queues are empty again (e-mails,
    # receipts, the portal's sync done), per accepted dossier. Unlike the figure above, it does not depend on
    # how much of that work happened to fall before the last SMS.
    wait_idle(stack)
    cpu_settled = cpu_seconds(stack, servers=True)
    # read after the CPU figures: the sandbox decodes each e-mail (MIME) when its outbox is first read
    emails = requests.get(f"{stack.sandbox_url}/outbox.json", params={"channel": "email"}, timeout=30).json()
    email_count = sum(1 for m in emails["messages"] if "bench" in (m["to"] or ""))
    cpu_ms_settled = {label: round((cpu_settled[label] - cpu_before[label]) * 1000 / max(1, len(wanted)), 2)
                      for label in cpu_before
                      if cpu_before[label] is not None and cpu_settled.get(label) is not None}

    figures = {
        "dossiers": count,
        "target_accepts_per_second": rate,
        "submit_per_second": round(count / submit_seconds, 1),
        "achieved_accepts_per_second": round(len(wanted) / accept_window, 1) if accept_window else None,
        "accept_start_lateness_p99_ms": _ms(percentile(lateness, 0.99)),
        # how long each ``act_on_dossier`` call took: what a portal frontend waits for while the SMS go out
        "accept_call_ms": {"p50": _ms(percentile(call_times, 0.5)), "p99": _ms(percentile(call_times, 0.99))},
        "errors": {"submit": len(submit_errors), "accept": len(accept_errors),
                   "first": (submit_errors + accept_errors)[:3]},
        "sms_received": len(arrivals),
        "sms_missing": missing,
        "sms_duplicates": duplicates,
        "emails_received": email_count,
        "latency_ms": {"p50": _ms(percentile(latencies, 0.5)), "p90": _ms(percentile(latencies, 0.9)),
                       "p99": _ms(percentile(latencies, 0.99)), "max": _ms(max(latencies) if latencies else None)},
        "latency_from_schedule_ms": {"p50": _ms(percentile(from_schedule, 0.5)),
                                     "p99": _ms(percentile(from_schedule, 0.99))},
        "latency_slope_seconds_per_second": None if slope(points) is None else round(slope(points), 4),
        # CPU of each process from the first accept until every SMS arrived, per accepted dossier
        "cpu_ms_per_dossier": cpu_ms_per_dossier,
        # the same until the stack was idle again, with the local PostgreSQL and RabbitMQ
        "cpu_ms_per_dossier_settled": cpu_ms_settled,
        "cpu_ms_per_dossier_settled_total": round(sum(cpu_ms_settled.values()), 2),
        "profiles": profiles,
        "stages_ms": stages(stack, codes, arrivals),
    }
    figures["table"] = [
        ("accepts/s achieved (target)", f"{figures['achieved_accepts_per_second']} ({rate:g})", f"{rate:g}"),
        ("accept call p50 / p99", f"{figures['accept_call_ms']['p50']} / {figures['accept_call_ms']['p99']} ms", ""),
        ("accept → SMS p50", f"{figures['latency_ms']['p50']} ms", ""),
        ("accept → SMS p99", f"{figures['latency_ms']['p99']} ms", "≤ 300 ms"),
        ("latency slope", f"{figures['latency_slope_seconds_per_second']} s/s", "≈ 0"),
        ("SMS received / missing / twice", f"{len(arrivals)} / {missing} / {duplicates}", f"{count} / 0 / 0"),
        ("e-mails received", str(email_count), str(count)),
        *((f"stage {name.replace('_', ' ')} p50 / p99", f"{spread['p50']} / {spread['p99']} ms", "")
          for name, spread in figures["stages_ms"].items()),
        ("CPU ms per dossier (accept → SMS)", ", ".join(f"{k} {v}" for k, v in cpu_ms_per_dossier.items()), ""),
        ("CPU ms per dossier, all of its work (until idle)",
         f"{figures['cpu_ms_per_dossier_settled_total']}: "
         + ", ".join(f"{k} {v}" for k, v in cpu_ms_settled.items()), ""),
    ]
    return figures
