"""Server-to-server callbacks (IPNs, delivery receipts), retried in the background like the providers do.

A provider keeps its connections to a merchant open (HTTP keep-alive) and sends its callbacks from a
few workers, not from a new thread and a new connection each: the sandbox does the same, so the cost
the services pay for a receipt is the receipt, not a TCP handshake and a new server thread.
"""
import heapq
import http.client
import itertools
import json
import threading
import time
from urllib.parse import urlencode, urlsplit

WORKERS = 8  # callbacks in flight at once; the rest wait their turn, in due order


class Answer:
    """What a receiver answered: ``status_code``, ``text``, ``json()`` (the part of ``requests``'
    response the fakes read)."""

    def __init__(self, status_code, body):
        self.status_code, self._body = status_code, body

    @property
    def text(self):
        return self._body.decode("utf-8", "replace")

    def json(self):
        return json.loads(self._body)


class _Connections(threading.local):
    """One kept-alive connection per receiver (scheme, host and port) and thread that sends callbacks.

    ``http.client`` rather than ``requests``: ``requests`` cost the sandbox half a millisecond of CPU
    per receipt, a third of all its work under ``make bench``; the bytes on the wire are the same.
    """

    def send(self, method, url, payload, as_json, timeout):
        parts = urlsplit(url)
        query = parts.query
        body, headers = None, {}
        if method == "GET":
            query = "&".join(part for part in (query, urlencode(payload, doseq=True)) if part)
        elif as_json:
            body, headers = json.dumps(payload).encode("utf-8"), {"Content-Type": "application/json"}
        else:
            body = urlencode(payload, doseq=True).encode("ascii")
            headers = {"Content-Type": "application/x-www-form-urlencoded"}
        target = (parts.path or "/") + (f"?{query}" if query else "")
        pool = self.__dict__.setdefault("pool", {})
        key = (parts.scheme, parts.netloc)
        while True:
            connection = pool.pop(key, None)
            reused = connection is not None
            if connection is None:
                kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
                connection = kind(parts.netloc, timeout=timeout)
            try:
                connection.request(method, target, body=body, headers=headers)
                response = connection.getresponse()
                answer = Answer(response.status, response.read())
            except (OSError, http.client.HTTPException):
                connection.close()
                if reused:
                    continue  # the receiver closed the kept-alive connection meanwhile: once more, on a new one
                raise
            if response.will_close:
                connection.close()
            else:
                pool[key] = connection
            return answer


_connections = _Connections()


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
        try:
            response = _connections.send(method, url, payload, as_json, timeout=15)
        except (OSError, http.client.HTTPException) as exc:
            store.add_callback(kind, url, payload, None, f"{type(exc).__name__}")
            return False
        try:
            answer = response.json()
        except ValueError:
            answer = response.text[:500]
        store.add_callback(kind, url, payload, response.status_code, answer)
        return accepted(response)

    def attempt_then_retry(remaining, wait):
        """One attempt now; if refused, the next ``wait`` seconds later (then twice as long), while any remain."""
        if attempt():
            return True
        if remaining > 1:
            _scheduler.at(time.monotonic() + wait, lambda: attempt_then_retry(remaining - 1, wait * 2))
        return False

    if background or delay:
        _scheduler.at(time.monotonic() + delay, lambda: attempt_then_retry(attempts, retry_seconds))
        return None
    return attempt_then_retry(attempts, retry_seconds)
