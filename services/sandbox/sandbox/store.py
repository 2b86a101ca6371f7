"""What the sandbox has seen: messages to citizens, payments, callbacks; thread-safe, in memory."""
import itertools
import threading
from datetime import datetime, timedelta, timezone

VN_TZ = timezone(timedelta(hours=7), "ICT")


def now_vn():
    return datetime.now(VN_TZ)


class Faults:
    """Injected SMTP failures: ``plan("smtp", "451", times=2)`` makes the next two messages answer 451."""

    def __init__(self):
        self._lock = threading.Lock()
        self._planned = {}

    def plan(self, provider, code, times=1):
        with self._lock:
            self._planned[provider] = [str(code), int(times)]

    def take(self, provider):
        """The code to answer with instead of success, or None; ``times < 0`` means until cleared."""
        with self._lock:
            planned = self._planned.get(provider)
            if not planned:
                return None
            code, times = planned
            if times > 0:
                planned[1] -= 1
                if planned[1] == 0:
                    del self._planned[provider]
            return code

    def clear(self):
        with self._lock:
            self._planned.clear()

    def snapshot(self):
        with self._lock:
            return {name: {"code": code, "times": times} for name, (code, times) in self._planned.items()}


class Store:
    """Outbox of messages and the callbacks sent, for the pages and for tests (the fakes keep their orders)."""

    def __init__(self):
        self.lock = threading.RLock()
        self._ids = itertools.count(1)
        self.messages = []  # SMS and e-mails, oldest first
        self._undecoded = []  # (message, decode) not read yet
        self._decoding = threading.Lock()
        self.callbacks = []  # IPNs and receipts the sandbox sent, with the answers
        self.faults = Faults()

    def next_id(self):
        return next(self._ids)

    def add_message(self, channel, provider, to, text, subject=None, html=None, decode=None, **meta):
        """``decode()``, when given, returns the fields still to fill (``text``, ``subject``, ``html``,
        ``meta``); it runs when the outbox is first read, not while the provider answers (parsing a MIME
        e-mail costs the sink more than everything else it does for it)."""
        with self.lock:
            message = {
                "id": self.next_id(),
                "at": now_vn().isoformat(),
                "channel": channel,
                "provider": provider,
                "to": to,
                "subject": subject,
                "text": text,
                "html": html,
                "meta": meta,
            }
            if decode is not None:
                self._undecoded.append((message, decode))
            self.messages.append(message)
            return message

    def outbox(self, channel=None, after=None):
        """Messages newest first (of one ``channel`` only, if given; only those whose ``id`` is above
        ``after``, if given: a reader polling for new messages). Messages of that channel not decoded
        yet are decoded here, outside ``lock``, so a fake answering meanwhile never waits for it; readers
        take turns, so none sees a message another is still decoding."""
        with self._decoding:
            with self.lock:
                undecoded = [item for item in self._undecoded if channel in (None, item[0]["channel"])]
                self._undecoded = [item for item in self._undecoded if channel not in (None, item[0]["channel"])]
            decoded = [(message, decode()) for message, decode in undecoded]
            with self.lock:
                for message, fields in decoded:
                    message["meta"].update(fields.pop("meta", {}))
                    message.update(fields)
                newest_first = reversed(self.messages)
                if after is not None:  # ids grow with the list: stop at the first message already seen
                    newest_first = itertools.takewhile(lambda message: message["id"] > after, newest_first)
                return [message for message in newest_first if channel in (None, message["channel"])]

    def add_callback(self, kind, url, request, status, answer):
        with self.lock:
            self.callbacks.append({"id": self.next_id(), "at": now_vn().isoformat(), "kind": kind, "url": url,
                                   "request": request, "status": status, "answer": answer})

    def callbacks_newest_first(self):
        with self.lock:
            return list(reversed(self.callbacks))

    def reset(self):
        with self.lock:
            self.__init__()
