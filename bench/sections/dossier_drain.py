"""``payment_succeeded`` → dossier in ``processing``, and the CPU of a paid dossier end to end.

The IPNs of the ``ipn`` section make the payment service publish one ``payment_succeeded`` per
dossier; the dossier service confirms each with payment and moves the dossier to ``processing``. The
drain rate is the paid dossiers divided by the time from the first IPN sent to the last dossier's
``processing`` history entry (the dossier database's timestamp); ``after_last_ipn_ms`` is how long the
dossier service kept working once the IPNs were all answered (0 means it kept up with them).

Then, once every queue of the vhost is empty (notify has sent its messages too), the CPU time each
process used since ``submit_accept_pay`` began (``/proc/<pid>/stat``), per paid dossier.
"""
import time

import sqlalchemy as sa

from bench.sections.notify_latency import cpu_seconds, wait_idle

NAME = "dossier_drain"
REQUIRES = ("submit_accept_pay", "ipn")
TIMEOUT_SECONDS = 120


def processing_times(engine, codes):
    """``{code: Unix time of its processing entry}`` for those of ``codes`` that reached processing."""
    with engine.connect() as connection:
        rows = connection.execute(sa.text(
            "SELECT d.code, min(h.at) FROM dossiers d JOIN dossier_history h ON h.dossier_id = d.id "
            "WHERE h.status = 'processing' AND d.code = ANY(:codes) GROUP BY d.code"), {"codes": codes})
        return {code: at.timestamp() for code, at in rows}


def run(stack, args):
    codes = stack.ipn_paid
    deadline = time.time() + TIMEOUT_SECONDS
    while True:
        reached = processing_times(stack.databases["dossier"].engine, codes)
        if len(reached) == len(codes) or time.time() > deadline:
            break
        time.sleep(0.5)
    last = max(reached.values()) if reached else None
    seconds = (last - stack.ipn_started) if last else None
    events_per_second = round(len(reached) / seconds, 1) if seconds else None

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

    figures = {
        "paid_dossiers": len(stack.paid),
        "ipn_answered_00": len(codes),
        "reached_processing": len(reached),
        "seconds_from_first_ipn": None if seconds is None else round(seconds, 2),
        "events_per_second": events_per_second,
        "after_last_ipn_ms": None if last is None else round(max(0.0, last - stack.ipn_finished) * 1000, 1),
        # submit + accept + start_payment + IPN + processing + notifications, per paid dossier
        "cpu_ms_per_paid_dossier": per_dossier,
        "cpu_ms_per_paid_dossier_services": services_total,
        "idle_cpu_ms_per_second": {label: round(rate * 1000, 1) for label, rate in stack.idle_cpu_per_second.items()},
        "cpu_ms_per_paid_dossier_net_of_idle": net,
        "cpu_ms_per_paid_dossier_services_net_of_idle": net_total,
    }
    dispatcher = getattr(stack, "ceilings", {}).get("event_dispatcher")
    if dispatcher and events_per_second:
        figures["vs_event_dispatcher_ceiling"] = round(events_per_second / dispatcher, 3)
    figures["table"] = [
        ("payment_succeeded → processing (events/s)",
         f"{events_per_second} ({len(reached)} of {len(codes)}; "
         f"{figures.get('vs_event_dispatcher_ceiling')} × EventDispatcher)", "≥ 500"),
        ("dossier still draining after the last IPN", f"{figures['after_last_ipn_ms']} ms", ""),
        ("CPU ms per paid dossier, services (dossier + payment + notify + portal_sync)", services_total, "≤ 8"),
        ("CPU ms per paid dossier, per process", ", ".join(f"{k} {v}" for k, v in per_dossier.items()), ""),
        ("the same, less each process's idle CPU over those minutes (services; per process)",
         f"{net_total}; " + ", ".join(f"{k} {v}" for k, v in net.items()), "≤ 8"),
    ]
    return figures
