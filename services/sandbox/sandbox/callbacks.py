"""Server-to-server callbacks (IPNs, delivery receipts), retried in the background like the providers do.

A provider keeps its connections to a merchant open (HTTP keep-alive) and sends its callbacks from a
few workers, not from a new thread and a new connection each: the sandbox does the same, so the cost
the services pay for a receipt is the receipt, not a TCP handshake and a new server thread.
"""
import heapq
import itertools
import threading
import time

import requests

WORKERS = 8  # callbacks in flight at once; the rest wait their turn, in due order


class _Sessions(threading.local):
    """One ``requests.Session`` (a pool of kept-alive connections) per thread that sends callbacks."""

    @property
    def session(self):
        if not hasattr(self, "_session"):
            self._session = requests.Session()
            self._session.trust_env = False  # callbacks go to the services themselves: no proxy, no netrc
        return self._session


_sessions = _Sessions()


class CallbackScheduler:
    """Runs each job at its due time on one of ``workers`` threads (started on first use)."""

    def __init__(self, workers=WORKERS):
        self.workers = workers
        self._due = []  # heap of (due, sequence, job)
        self._sequence = itertools.count()
        self._condition = threading.Condition()
        self._started = False

    def at(self, due, job):
        with self._condition:
            if not self._started:
                self._started = True
                for number in range(self.workers):
                    threading.Thread(target=self._work, name=f"callbacks-{number}", daemon=True).start()
            heapq.heappush(self._due, (due, next(self._sequence), job))
            self._condition.notify()

    def _work(self):
        while True:
            with self._condition:
                while not self._due or self._due[0][0] > time.monotonic():
                    self._condition.wait(None if not self._due else self._due[0][0] - time.monotonic())
                _, _, job = heapq.heappop(self._due)
            job()


_scheduler = CallbackScheduler()


def deliver(store, kind, method, url, payload, accepted, attempts=5, retry_seconds=2.0, delay=0.0, as_json=False,
            background=False):
    """Send one callback; the first attempt runs now (unless ``background`` or ``delay``), retries in the
    background after ``retry_seconds``, doubled each time, up to ``attempts`` in all.

    ``accepted(response)`` says whether the receiver took it; a provider retries otherwise.
    """

    def attempt():
        session = _sessions.session
        try:
            if method == "GET":
                response = session.get(url, params=payload, timeout=15)
            elif as_json:
                response = session.post(url, json=payload, timeout=15)
            else:
                response = session.post(url, data=payload, timeout=15)
        except requests.RequestException as exc:
            store.add_callback(kind, url, payload, None, f"{type(exc).__name__}")
            return False
        try:
            answer = response.json()
        except ValueError:
            answer = response.text[:500]
        store.add_callback(kind, url, payload, response.status_code, answer)
        return accepted(response)

    def retry(remaining, wait):
        def job():
            if not attempt() and remaining > 1:
                retry(remaining - 1, wait * 2)()
        return lambda: _scheduler.at(time.monotonic() + wait, job)

    if background or delay:
        def first():
            if not attempt() and attempts > 1:
                retry(attempts - 1, retry_seconds)()
        _scheduler.at(time.monotonic() + delay, first)
        return None
    if attempt():
        return True
    if attempts > 1:
        retry(attempts - 1, retry_seconds)()
    return False
