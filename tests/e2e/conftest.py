"""End-to-end fixtures: the Procfile's processes, a fresh vhost, fresh databases, the sandbox.

``stack`` is parametrised: ``single`` runs one process of each service,
``scaled`` two of each (different HTTP ports), so every flow is also checked
for effects happening exactly once with competing consumers.
"""
import importlib.util

import pytest
from nameko.standalone.rpc import ClusterRpcProxy

from tests.e2e.harness import SERVICES, EventObserver, Stack, Vhost
from tests.helpers import bearer_token


def importable(module):
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


AVAILABLE = {service: importable(f"{service}.service") for service in SERVICES}
AVAILABLE["sandbox"] = importable("sandbox.app")

requires_payment = pytest.mark.skipif(
    not (AVAILABLE["payment"] and AVAILABLE["sandbox"]), reason="payment service or sandbox not importable yet")
requires_notify = pytest.mark.skipif(
    not (AVAILABLE["notify"] and AVAILABLE["sandbox"]), reason="notify service or sandbox not importable yet")


@pytest.fixture(scope="module", params=[1, 2], ids=["single", "scaled"])
def stack(request, broker, fresh_database, tmp_path_factory):
    replicas = request.param
    databases = {service: fresh_database(service) for service in SERVICES if AVAILABLE[service]}
    for database in databases.values():
        database.truncate()  # the other topology's rows would only confuse the counts
    amqp_uri, api_uri = broker
    vhost = Vhost(amqp_uri, api_uri)
    only = [name for name in list(SERVICES) + ["sandbox"] if AVAILABLE.get(name)]
    log_dir = tmp_path_factory.mktemp(f"e2e-{request.param_index}")
    stack = Stack(vhost.amqp_uri, databases, log_dir, replicas=replicas,
                  only=lambda_only(only))
    observer = None
    try:
        observer = EventObserver(vhost.amqp_uri, [s for s in SERVICES if AVAILABLE[s]])
        stack.observer = observer
        stack.start()
        yield stack
    finally:
        stack.stop()
        if observer is not None:
            observer.close()
        vhost.delete()


def lambda_only(names):
    """Procfile lines to run: the services that import, the sandbox, and any other helper line."""
    class Only:
        def __contains__(self, name):
            return name in names or name not in SERVICES + ("sandbox",)

    return Only()


@pytest.fixture(scope="module")
def rpc(stack):
    # staff token (officer + finance + operator of the sample agencies): the flows act as the portal's staff
    proxy = ClusterRpcProxy({"AMQP_URI": stack.amqp_uri}, context_data={"authorization": bearer_token(ttl_seconds=3 * 3600)},
                            timeout=30)
    client = proxy.start()
    yield client
    proxy.stop()
