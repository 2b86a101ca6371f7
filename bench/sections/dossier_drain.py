"""``payment_succeeded`` → dossier in ``processing``, and the CPU of a paid dossier end to end.

The IPNs of the ``ipn`` section make the payment service publish one ``payment_succeeded`` per
dossier; the dossier service confirms each with payment and moves the dossier to ``processing``. The
drain rate is the paid dossiers divided by the time from the first IPN sent to the last dossier's
``processing`` history entry (the dossier database's timestamp); ``after_last_ipn_ms`` is how long the
dossier service kept working once the IPNs were all answered (0 means it kept up with them).

Then the backlog: the last ``--drain-backlog`` paid dossiers (kept out of the ``ipn`` section) get
their IPNs while every dossier process is stopped (SIGSTOP), so their ``payment_succeeded`` events
pile up in dossier's queue; once the queue holds them all, the processes continue (SIGCONT) and the
figure is the backlog divided by the time from continuing to the last ``processing`` entry: what the
dossier service drains when it has events waiting, not the IPN rate that feeds it. The dossier
processes' CPU over that drain, per event, is printed with it.

Then, once every queue of the vhost is empty (notify has sent its messages too), the CPU time each
process used since ``submit_accept_pay`` began (``/proc/<pid>/stat``), per paid dossier.
"""
import os
import signal
import time

import pika
import sqlalchemy as sa

from bench.sections.ipn import ipn_targets, rsp_code, send_all
from bench.sections.notify_latency import cpu_seconds, vhost_message_stats, wait_idle

NAME = "dossier_drain"
REQUIRES = ("submit_accept_pay", "ipn")
TIMEOUT_SECONDS = 120
QUEUE = "evt-payment-payment_succeeded--dossier.on_payment_succeeded"


def processing_times(engine, codes):
    """``{code: Unix time of its processing entry}`` for those of ``codes`` that reached processing."""
    with engine.connect() as connection:
        rows = connection.execute(sa.text(
            "SELECT d.code, min(h.at) FROM dossiers d JOIN dossier_history h ON h.dossier_id = d.id "
            "WHERE h.status = 'processing' AND d.code = ANY(:codes) GROUP BY d.code"), {"codes": codes})
        return {code: at.timestamp() for code, at in rows}


def wait_processing(stack, codes, poll=0.5):
    deadline = time.time() + TIMEOUT_SECONDS
    while True:
        reached = processing_times(stack.databases["dossier"].engine, codes)
        if len(reached) == len(codes) or time.time() > deadline:
            return reached
        time.sleep(poll)


def ready_in_queue(amqp_uri, queue):
    """Messages ready in ``queue`` now (a passive declare: exact, unlike the management API's figures)."""
    connection = pika.BlockingConnection(pika.URLParameters(amqp_uri))
    try:
        return connection.channel().queue_declare(queue=queue, passive=True).method.message_count
    finally:
        connection.close()


def unpublished(stack):
    with stack.databases["payment"].engine.connect() as connection:
        return connection.execute(sa.text("SELECT count(*) FROM outbox_messages WHERE published_at IS NULL")).scalar()


def backlog_drain(stack):
    """Events piled up while dossier was stopped, then drained: ``{figures}`` or None without a backlog."""
    paid = getattr(stack, "backlog_paid", [])
    if not paid:
        return None
    dossiers = [process for process in stack.processes if process.name == "dossier"]
    for process in dossiers:
        os.killpg(process.popen.pid, signal.SIGSTOP)
    try:
        _, answers = send_all(stack.url("payment"), ipn_targets(stack, paid, stack.backlog_first_index))
        codes = [paid[index]["code"] for index, status, body, _ in answers if rsp_code(status, body) == "00"]
        deadline = time.time() + 60
        while unpublished(stack) and time.time() < deadline:
            time.sleep(0.2)  # payment's relay is still publishing (a row is marked once its message is confirmed)
        queued = ready_in_queue(stack.amqp_uri, QUEUE)  # less what the stopped consumers had prefetched
    finally:
        cpu_before = cpu_seconds(stack)
        resumed = time.time()
        for process in dossiers:
            os.killpg(process.popen.pid, signal.SIGCONT)
    reached = wait_processing(stack, codes, poll=0.1)
    cpu_after = cpu_seconds(stack)
    last = max(reached.values()) if reached else None
    seconds = (last - resumed) if last else None
    cpu_ms = sum(cpu_after[p.label] - cpu_before[p.label] for p in dossiers) * 1000 / max(1, len(reached))
    return {"events": len(codes), "queued_when_resumed": queued, "reached_processing": len(reached),
            "seconds": None if seconds is None else round(seconds, 2),
            "events_per_second": round(len(reached) / seconds, 1) if seconds else None,
            "dossier_cpu_ms_per_event": round(cpu_ms, 2)}


def run(stack, args):
    codes = stack.ipn_paid
    reached = wait_processing(stack, codes)
    last = max(reached.values()) if reached else None
    seconds = (last - stack.ipn_started) if last else None
    events_per_second = round(len(reached) / seconds, 1) if seconds else None

    backlog = backlog_drain(stack)
    wait_idle(stack)  # every consequence of the paid dossiers (notify's messages included) is done
    cpu_after = cpu_seconds(stack)
    before = stack.paid_cpu_before
    per_dossier = {label: round((cpu_after[label] - before[label]) * 1000 / max(1, len(stack.paid)), 2)
                   for label in before if before[label] is not None and cpu_after.get(label) is not None}
    services_total = round(sum(value for label, value in per_dossier.items() if not label.startswith("sandbox")), 2)
    # the same without what the process would have used idle over those minutes
    elapsed = time.time() - stack.paid_started
    net = {label: round(value - stack.idle_cpu_per_second.get(label, 0.0) * elapsed * 1000 / max(1, len(stack.paid)),
                        2) for label, value in per_dossier.items()}
    net_total = round(sum(value for label, value in net.items() if not label.startswith("sandbox")), 2)
    # the messages a paid dossier makes the services exchange (RPC requests and replies, events, delivery
    # messages), and what Nameko alone spends on that many at its own ceiling's cost per event
    messages = vhost_message_stats(stack)
    paid = max(1, len(stack.paid))
    messages_per_dossier = {key: round((messages[key] - stack.paid_messages_before[key]) / paid, 1) for key in messages}
    per_event = getattr(stack, "ceilings", {}).get("cpu_ms_per_event")
    framework_floor = round(messages_per_dossier["delivered"] * per_event, 1) if per_event else None

    figures = {
        "paid_dossiers": len(stack.paid),
        "ipn_answered_00": len(codes),
        "reached_processing": len(reached),
        "seconds_from_first_ipn": None if seconds is None else round(seconds, 2),
        "events_per_second": events_per_second,
        "backlog": backlog,
        "after_last_ipn_ms": None if last is None else round(max(0.0, last - stack.ipn_finished) * 1000, 1),
        # submit + accept + start_payment + IPN + processing + notifications, per paid dossier
        "cpu_ms_per_paid_dossier": per_dossier,
        "cpu_ms_per_paid_dossier_services": services_total,
        "idle_cpu_ms_per_second": {label: round(rate * 1000, 1) for label, rate in stack.idle_cpu_per_second.items()},
        "cpu_ms_per_paid_dossier_net_of_idle": net,
        "cpu_ms_per_paid_dossier_services_net_of_idle": net_total,
        "amqp_messages_per_paid_dossier": messages_per_dossier,
        "nameko_floor_cpu_ms_per_paid_dossier": framework_floor,
    }
    dispatcher = getattr(stack, "ceilings", {}).get("event_dispatcher")
    if dispatcher and events_per_second:
        figures["vs_event_dispatcher_ceiling"] = round(events_per_second / dispatcher, 3)
    if dispatcher and backlog and backlog["events_per_second"]:
        backlog["vs_event_dispatcher_ceiling"] = round(backlog["events_per_second"] / dispatcher, 3)
    figures["table"] = [
        ("payment_succeeded → processing, a backlog drained (events/s)",
         "no backlog (--drain-backlog 0)" if not backlog else
         f"{backlog['events_per_second']} ({backlog['reached_processing']} of {backlog['events']}, "
         f"{backlog['queued_when_resumed']} queued; {backlog.get('vs_event_dispatcher_ceiling')} × EventDispatcher; "
         f"dossier CPU {backlog['dossier_cpu_ms_per_event']} ms per event)", "≥ 500"),
        ("payment_succeeded → processing while the IPNs arrive (events/s, bounded by the IPN rate)",
         f"{events_per_second} ({len(reached)} of {len(codes)}; "
         f"{figures.get('vs_event_dispatcher_ceiling')} × EventDispatcher)", ""),
        ("dossier still draining after the last IPN", f"{figures['after_last_ipn_ms']} ms", ""),
        ("CPU ms per paid dossier, services (dossier + payment + notify + portal_sync)", services_total, "≤ 8"),
        ("CPU ms per paid dossier, per process", ", ".join(f"{k} {v}" for k, v in per_dossier.items()), ""),
        ("the same, less each process's idle CPU over those minutes (services; per process)",
         f"{net_total}; " + ", ".join(f"{k} {v}" for k, v in net.items()), "≤ 8"),
        ("AMQP messages per paid dossier (published / delivered)",
         f"{messages_per_dossier['published']} / {messages_per_dossier['delivered']}", ""),
        ("Nameko's own CPU for that many deliveries at its EventDispatcher ceiling (ms per paid dossier)",
         framework_floor if framework_floor is not None else "(run with framework_ceilings)", ""),
    ]
    return figures
