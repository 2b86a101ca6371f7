"""docker-compose.yml for real: two replicas of each service in containers against
containerised RabbitMQ and PostgreSQL, the demo's VNPay payment through to its SMS,
and a SIGTERM to a replica of every service in the middle of a load."""
import json
import re
import threading
import time

import pytest

from tests.containers.conftest import REPLICAS, SERVICES, docker, record

pytestmark = pytest.mark.slow

# Runs inside a sandbox container on the stack's network (AMQP_URI: the operator's).
LOAD = r'''
import eventlet
eventlet.monkey_patch()
import json, os, sys
from nameko.standalone.rpc import ClusterRpcProxy
from portal_shared.auth import bearer, make_token

# The caller (CONTRACT section 5): an officer of the sample agencies who is also an operator.
TOKEN = bearer(make_token(os.environ["AUTH_JWT_SECRET"], "container-test", ["officer", "operator"],
                          agencies=["STP-HN", "CA-HN", "SGTVT-HN", "UBND-PX-HN"],
                          issuer=os.environ.get("AUTH_JWT_ISSUER") or "portal-auth"))

count, label = int(sys.argv[1]), sys.argv[2]
config = {"AMQP_URI": os.environ["AMQP_URI"]}

def one(number):
    # One proxy per green thread, never shared.
    with ClusterRpcProxy(config, context_data={"authorization": TOKEN}, timeout=120) as rpc:
        applicant = {"full_name": "Tran Thi Tai", "id_number": "0010990%05d" % number,
                     "phone": "09%08d" % number, "email": "tai%d@example.vn" % number}
        dossier = rpc.dossier.submit_dossier("LLTP-01", applicant, {"load": label, "n": number})
        dossier = rpc.dossier.act_on_dossier(dossier["code"], "accept", "can-bo-%d" % number)
        return dossier["code"], dossier["status"]

pool = eventlet.GreenPool(8)
for code, status in pool.imap(one, range(count)):
    print(json.dumps([code, status]), flush=True)
print("end", flush=True)
'''

# Reads back what every dossier of the load led to: its status, its notifications, the SMS the fakes got.
CHECK = r'''
import eventlet
eventlet.monkey_patch()
import json, os, sys
import requests
from nameko.standalone.rpc import ClusterRpcProxy
from portal_shared.auth import bearer, make_token

# The caller (CONTRACT section 5): an officer of the sample agencies who is also an operator.
TOKEN = bearer(make_token(os.environ["AUTH_JWT_SECRET"], "container-test", ["officer", "operator"],
                          agencies=["STP-HN", "CA-HN", "SGTVT-HN", "UBND-PX-HN"],
                          issuer=os.environ.get("AUTH_JWT_ISSUER") or "portal-auth"))

codes = json.loads(sys.argv[1])
out = {}
with ClusterRpcProxy({"AMQP_URI": os.environ["AMQP_URI"]}, context_data={"authorization": TOKEN}, timeout=60) as rpc:
    for code in codes:
        dossier = rpc.dossier.get_dossier(code)
        notifications = rpc.notify.get_notifications(code)
        outbox = requests.get(os.environ["SANDBOX_URL"] + "/outbox.json", params={"contains": code}, timeout=10).json()
        out[code] = {
            "status": dossier["status"],
            "history": [entry["status"] for entry in dossier["history"]],
            "notifications": sorted((n["channel"], n["template"], n["status"]) for n in notifications),
            "sms": sorted(m["text"] for m in outbox["messages"] if m["channel"] == "sms"),
        }
print(json.dumps(out))
'''


def test_every_replica_is_healthy_non_root_read_only_and_without_capabilities(stack):
    for service in [*SERVICES, "sandbox"]:
        containers = stack.containers(service)
        assert len(containers) == (REPLICAS if service in SERVICES else 1), f"{service}: {sorted(containers)}"
        for name, container in containers.items():
            assert container["State"]["Health"]["Status"] == "healthy", name
            assert container["Config"]["User"] == "10001:10001", name
            assert container["HostConfig"]["ReadonlyRootfs"] is True, name
            assert container["HostConfig"]["CapDrop"] == ["ALL"], name
    for service in ("rabbitmq", "postgres"):
        (container,) = stack.containers(service).values()
        assert container["State"]["Health"]["Status"] == "healthy", service


def test_the_demo_walks_a_dossier_through_a_vnpay_payment_to_its_sms(stack):
    result = stack.compose("run", "--rm", "-T", "--no-deps", "sandbox", "python", "-m", "sandbox.demo", timeout=300)
    output = result.stdout
    code = re.search(r"dossier (STP-[A-Z0-9-]+): submitted", output).group(1)
    assert "VNPay sent the IPN" in output and "vnp_ResponseCode=00" in output, output
    assert f"dossier {code}: processing (mã 4)" in output, output
    assert f"dossier {code}: returned (mã 10)" in output, output

    checked = json.loads(stack.python(CHECK, json.dumps([code])).stdout)[code]
    assert checked["history"] == ["submitted", "accepted", "payment_requested", "processing", "processed", "returned"]
    sms = checked["sms"]
    # accepted, payment requested, payment receipt, processed, returned: each exactly once, unaccented ASCII.
    assert len(sms) == 5 and len(set(sms)) == 5, sms
    assert all(text.isascii() and code in text for text in sms), sms
    assert any("thanh toan" in text.lower() for text in sms), sms


def test_a_sigterm_mid_load_finishes_in_flight_work_and_loses_nothing(stack):
    count = 40
    victims = [f"{stack.project}-{service}-1" for service in SERVICES]
    stopped, stoppers = {}, []

    def stop(name):
        started = time.monotonic()
        docker("stop", "--time", "30", name, timeout=90)
        stopped[name] = round(time.monotonic() - started, 1)

    load = stack.python_streaming(LOAD, str(count), "sigterm")
    outcome = []
    for line in load.stdout:  # one line per answered call, then "end"
        if line.strip() == "end":
            break
        outcome.append(json.loads(line))
        if len(outcome) == 5:  # the load is under way: SIGTERM one replica of each service now
            stoppers = [threading.Thread(target=stop, args=(name,)) for name in victims]
            for thread in stoppers:
                thread.start()
    load.wait(timeout=300)
    for thread in stoppers:
        thread.join()
    assert load.returncode == 0, load.stderr.read()[-3000:]
    assert stoppers, "the load ended before five calls were answered"

    # Every call answered (a worker running at the SIGTERM finishes and replies; what
    # the replica had not started goes back to the queue for its peer).
    assert len(outcome) == count and all(status == "payment_requested" for _, status in outcome), outcome
    finished_after_sigterm = {}
    for name in victims:
        state = docker("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", name).stdout.split()
        assert state == ["exited", "0"], f"{name} ended {state} (SIGTERM must stop it cleanly)"
        log = docker("logs", name).stdout + docker("logs", name).stderr
        assert "stopping services" in log, f"{name} did not stop gracefully"
        after = log[log.index("stopping services"):]
        finished_after_sigterm[name] = after.count('"call_id"')  # worker log lines written after the signal
    record(sigterm_stop_seconds=stopped, worker_log_lines_after_sigterm=finished_after_sigterm)

    codes = [code for code, _ in outcome]
    expected_notifications = sorted([(channel, template, "sent") for channel in ("email", "sms")
                                     for template in ("accepted", "payment_requested")])

    def settled():
        checked = json.loads(stack.python(CHECK, json.dumps(codes)).stdout)
        return checked if all(
            item["status"] == "payment_requested" and len(item["sms"]) == 2
            and sorted((c, t, "sent" if s in ("sent", "delivered") else s) for c, t, s in item["notifications"])
            == expected_notifications
            for item in checked.values()) else None

    deadline = time.monotonic() + 120
    checked = settled()
    while checked is None and time.monotonic() < deadline:
        time.sleep(3)
        checked = settled()
    if checked is None:
        checked = json.loads(stack.python(CHECK, json.dumps(codes)).stdout)
        bad = {code: item for code, item in checked.items() if len(item["sms"]) != 2}
        pytest.fail(f"after the SIGTERM, not every dossier got its events and messages exactly once: {bad}")
    for item in checked.values():
        assert item["history"] == ["submitted", "accepted", "payment_requested"]
        assert len(set(item["sms"])) == 2  # no message twice

    # The stopped replicas come back, healthy, and the stack is whole again.
    stack.compose("start", *SERVICES, timeout=120)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        health = [docker("inspect", "-f", "{{.State.Health.Status}}", name).stdout.strip() for name in victims]
        if health == ["healthy"] * len(victims):
            break
        time.sleep(2)
    assert health == ["healthy"] * len(victims)
