"""SMS providers behind one abstract client, and the failover router.

Each vendor client implements only the wire call (``_send``); the base class
times and logs the call and turns transport failures into ``ProviderError``
with a temporary/permanent class. ``SmsRouter`` tries the providers in the
order of ``SMS_PROVIDERS``, fails over on a permanent error or on repeated
temporary ones, and skips a provider that keeps failing for a cool-down.

Cool-down state is kept per process, in memory: it is an optimisation (a
process that has not yet seen a provider fail pays at most a few failed calls
before it learns), it needs no database round trip on the hot path and it
heals by itself when the process restarts. Correctness never depends on it.

Bulkheads: each provider has at most ``SMS_PROVIDER_CONCURRENCY`` calls under
way in a process. A provider whose slots are all taken (it hangs) is passed
over for the next one at once, so a hung provider costs later messages
nothing, and the first ones at most one timeout: a timeout is never retried
on the same provider. A provider's send rate is held to its
``<PROVIDER>_RATE_PER_SECOND`` (brandname contracts): a message waits for its
turn (it stays a queued message), it does not fail over or fail for it.
Each client keeps one pool of keep-alive HTTP connections for its calls (urllib3 itself: ``requests``
on top of it cost a third more CPU per send, for features these calls never use).
"""
import json
import threading
import time
import urllib.request
from urllib.parse import quote
from abc import ABC, abstractmethod
from dataclasses import dataclass

import certifi
import urllib3
from urllib3.exceptions import HTTPError, MaxRetryError, NewConnectionError, TimeoutError as Urllib3Timeout

from notify.domain.model import Outcome, Status
from portal_shared.config import get_float, get_int, get_list, get_str
from portal_shared.logs import get_logger
from portal_shared.phones import to_international

log = get_logger(__name__)


class ProviderError(Exception):
    """A provider did not take the message. ``permanent``: retrying this provider will not help;
    ``recipient_rejected``: no provider will ever deliver to this number."""

    def __init__(self, provider, code, detail="", permanent=False, recipient_rejected=False):
        self.provider, self.code, self.detail = provider, str(code), detail
        self.permanent, self.recipient_rejected = permanent, recipient_rejected
        super().__init__(f"{provider} {code}: {detail}".strip())


@dataclass(frozen=True)
class Accepted:
    provider: str
    reference: str | None
    raw: dict


class RateLimiter:
    """At most ``rate`` calls a second, evenly spaced; ``wait()`` blocks until the caller's turn.

    Waiters queue on a lock and each call starts at least one interval after the previous call
    actually started, so a caller delayed by a busy CPU never lets the next ones burst.
    """

    def __init__(self, rate_per_second=0.0, clock=time.monotonic, sleep=time.sleep):
        self.interval = 1.0 / rate_per_second if rate_per_second and rate_per_second > 0 else 0.0
        self.clock, self.sleep = clock, sleep
        self._last = None
        self._lock = threading.Lock()

    def wait(self):
        if not self.interval:
            return 0.0
        with self._lock:
            started = now = self.clock()
            if self._last is not None and now < self._last + self.interval:
                self.sleep(self._last + self.interval - now)
                now = self.clock()
            self._last = now
        return now - started


JSON_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}


def http_pool(base_url, size):
    """Keep-alive connections to one provider, at most ``size`` open, never retried by urllib3 (a send is
    retried by the pipeline, with the provider's idempotency key). The environment's proxy (``HTTPS_PROXY``,
    ``NO_PROXY``) is read once here; certificates are checked against certifi's bundle, as ``requests`` did."""
    scheme_host = urllib3.util.parse_url(base_url)
    options = {"num_pools": 2, "maxsize": size, "retries": False, "ca_certs": certifi.where()}
    proxy = urllib.request.getproxies().get(scheme_host.scheme)
    if proxy and not urllib.request.proxy_bypass(scheme_host.host or ""):
        return urllib3.ProxyManager(proxy, **options)
    return urllib3.PoolManager(**options)


def _timed_out(exc):
    """Whether urllib3's error means the provider did not answer in time (also when wrapped); a refused
    connection is not a timeout, although urllib3 derives its error from one."""
    if isinstance(exc, MaxRetryError):
        exc = exc.reason
    return isinstance(exc, Urllib3Timeout) and not isinstance(exc, NewConnectionError)


class SmsClient(ABC):
    """Template method: ``send`` wraps the vendor's ``_send`` with timing, logging and error classes."""

    name = "sms"
    # whether an HTTP 4xx answer is permanent for this provider (5xx is always temporary)
    HTTP_4XX_PERMANENT = True

    def __init__(self, base_url, timeout=10.0, concurrency=16, rate_per_second=0.0):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.http = http_pool(self.base_url, max(1, concurrency))
        self.slots = threading.BoundedSemaphore(max(1, concurrency))
        self.limiter = RateLimiter(rate_per_second)

    def send(self, notification_id, phone, text):
        started = time.perf_counter()
        try:
            accepted = self._send(notification_id, phone, text)
        except ProviderError as exc:
            self._log("sms_provider_failed", notification_id, started, code=exc.code, permanent=exc.permanent)
            raise
        except HTTPError as exc:
            code = "timeout" if _timed_out(exc) else "connection_error"
            self._log("sms_provider_failed", notification_id, started, code=code, permanent=False)
            if code == "timeout":
                raise ProviderError(self.name, "timeout", "no answer in time") from None
            raise ProviderError(self.name, "connection_error", type(exc).__name__) from None
        # debug: the notification_attempted line of every outcome names the provider already
        self._log("sms_provider_accepted", notification_id, started, level="debug", reference=accepted.reference)
        return accepted

    def _log(self, event, notification_id, started, level="info", **fields):
        getattr(log, level)(event, provider=self.name, notification_id=notification_id,
                 elapsed_ms=round((time.perf_counter() - started) * 1000, 1), **fields)

    def _post_json(self, path, payload, headers=None):
        response = self.http.request(
            "POST", self.base_url + path, body=json.dumps(payload).encode(),
            headers={**JSON_HEADERS, **(headers or {})}, timeout=self.timeout, redirect=False)
        if response.status >= 500:
            raise ProviderError(self.name, f"http_{response.status}", "server error")
        if response.status >= 400:
            raise ProviderError(self.name, f"http_{response.status}", "request refused",
                                permanent=self.HTTP_4XX_PERMANENT)
        try:
            return json.loads(response.data)
        except ValueError:
            raise ProviderError(self.name, "bad_response", "answer is not JSON") from None

    @abstractmethod
    def _send(self, notification_id, phone, text):
        """The wire call: return ``Accepted`` or raise ``ProviderError``."""


class EsmsClient(SmsClient):
    """eSMS brandname API (SendMultipleMessage_V4_post_json)."""

    name = "esms"
    PATH = "/MainService.svc/json/SendMultipleMessage_V4_post_json/"
    TEMPORARY = {"99"}
    PERMANENT = {"101": "authentication failed", "104": "unknown brandname", "146": "template not registered"}
    # PROTOCOLS: "99" or HTTP errors are temporary; eSMS reports its permanent errors in CodeResult
    HTTP_4XX_PERMANENT = False

    def __init__(self, base_url, api_key, secret_key, brandname, callback_url="", timeout=10.0, **kwargs):
        super().__init__(base_url, timeout, **kwargs)
        self.api_key, self.secret_key, self.brandname, self.callback_url = api_key, secret_key, brandname, callback_url

    def _send(self, notification_id, phone, text):
        payload = {
            "ApiKey": self.api_key,
            "SecretKey": self.secret_key,
            "Phone": to_international(phone),
            "Content": text,
            "Brandname": self.brandname,
            "SmsType": "2",
            "IsUnicode": "0",
            "Sandbox": "0",
            # our notification id: eSMS refuses a repeat (124), so a retry never reaches the citizen twice
            "RequestId": notification_id,
            "CallbackUrl": self.callback_url,
        }
        answer = self._post_json(self.PATH, payload)
        code = str(answer.get("CodeResult", ""))
        if code == "100":
            return Accepted(self.name, str(answer.get("SMSID") or "") or None, answer)
        if code == "124":  # this RequestId was already accepted: the message is on its way
            return Accepted(self.name, None, answer)
        if code in self.TEMPORARY:
            raise ProviderError(self.name, code, answer.get("ErrorMessage") or "temporary error")
        raise ProviderError(self.name, code or "unknown", self.PERMANENT.get(code) or answer.get("ErrorMessage") or "refused",
                            permanent=True)


# eSMS delivery receipts (the CallbackUrl): SendStatus 5 = reached the handset, 4 = refused, 6 = deleted;
# other codes are not final. Translated here into our own vocabulary.
ESMS_DELIVERED = 5
ESMS_REFUSED = (4, 6)


def status_from_esms_receipt(send_status, send_failed=None, send_success=None):
    """Map an eSMS receipt to delivered / permanent_failure, or None when it is not final."""
    try:
        code = int(send_status)
    except (TypeError, ValueError):
        return None
    if code == ESMS_DELIVERED:
        if send_failed not in (None, "", 0, "0") and str(send_success or "0") in ("0", ""):
            return Status.PERMANENT_FAILURE
        return Status.DELIVERED
    if code in ESMS_REFUSED:
        return Status.PERMANENT_FAILURE
    return None


class SpeedSmsClient(SmsClient):
    """SpeedSMS REST API (``/index.php/sms/send``, Basic auth ``token:x``)."""

    name = "speedsms"
    PATH = "/index.php/sms/send"
    SMS_TYPE_BRANDNAME = 3
    TEMPORARY = {"500"}
    INVALID_PHONE = {"105"}

    def __init__(self, base_url, access_token, sender, timeout=10.0, **kwargs):
        super().__init__(base_url, timeout, **kwargs)
        self.access_token, self.sender = access_token, sender
        self.auth_header = urllib3.util.make_headers(basic_auth=f"{access_token}:x")  # PROTOCOLS: token as user, "x"

    def _send(self, notification_id, phone, text):
        number = to_international(phone)
        payload = {"to": [number], "content": text, "sms_type": self.SMS_TYPE_BRANDNAME, "sender": self.sender}
        answer = self._post_json(self.PATH, payload, headers=self.auth_header)
        if answer.get("status") == "success" and str(answer.get("code")) == "00":
            data = answer.get("data") or {}
            if number in (data.get("invalidPhone") or []) or phone in (data.get("invalidPhone") or []):
                raise ProviderError(self.name, "invalid_phone", "number refused", permanent=True, recipient_rejected=True)
            return Accepted(self.name, str(data.get("tranId") or "") or None, answer)
        code = str(answer.get("code") or "unknown")
        if code in self.TEMPORARY:
            raise ProviderError(self.name, code, answer.get("message") or "temporary error")
        raise ProviderError(self.name, code, answer.get("message") or "refused", permanent=True,
                            recipient_rejected=code in self.INVALID_PHONE)


def clients_from_config(config):
    """The enabled SMS clients in preference order; a provider without credentials is left out with a log line."""
    timeout = get_float(config, "SMS_HTTP_TIMEOUT_SECONDS", 10.0)
    callback_base = get_str(config, "NOTIFY_CALLBACK_BASE_URL", "")
    concurrency = get_int(config, "SMS_PROVIDER_CONCURRENCY", 16)
    callback_token = get_str(config, "ESMS_CALLBACK_TOKEN", "")
    if callback_base and not callback_token:
        log.warning("esms_receipts_disabled", reason="ESMS_CALLBACK_TOKEN not set; no CallbackUrl is sent")
    clients = []
    for name in (item.lower() for item in get_list(config, "SMS_PROVIDERS", ["esms", "speedsms"])):
        limits = {"concurrency": concurrency, "rate_per_second": get_float(config, f"{name.upper()}_RATE_PER_SECOND", 0.0)}
        if name == "esms":
            missing = [k for k in ("ESMS_API_KEY", "ESMS_SECRET_KEY", "ESMS_BRANDNAME") if not get_str(config, k)]
            if missing:
                log.warning("sms_provider_disabled", provider=name, reason="credentials not set", missing=missing)
                continue
            clients.append(EsmsClient(
                get_str(config, "ESMS_BASE_URL", "https://rest.esms.vn"), get_str(config, "ESMS_API_KEY"),
                get_str(config, "ESMS_SECRET_KEY"), get_str(config, "ESMS_BRANDNAME"),
                callback_url=(f"{callback_base.rstrip('/')}/callbacks/esms/{quote(callback_token, safe='')}"
                              if callback_base and callback_token else ""),
                timeout=timeout, **limits,
            ))
        elif name == "speedsms":
            missing = [k for k in ("SPEEDSMS_ACCESS_TOKEN", "SPEEDSMS_SENDER") if not get_str(config, k)]
            if missing:
                log.warning("sms_provider_disabled", provider=name, reason="credentials not set", missing=missing)
                continue
            clients.append(SpeedSmsClient(
                get_str(config, "SPEEDSMS_BASE_URL", "https://api.speedsms.vn"),
                get_str(config, "SPEEDSMS_ACCESS_TOKEN"), get_str(config, "SPEEDSMS_SENDER"), timeout=timeout, **limits,
            ))
        else:
            log.warning("sms_provider_disabled", provider=name, reason="unknown provider name in SMS_PROVIDERS")
    if not clients:
        log.warning("sms_disabled", reason="no SMS provider configured; SMS notifications will wait and fail")
    return clients


class SmsRouter:
    """First healthy provider wins; see the module docstring for the cool-down."""

    def __init__(self, clients, tries_per_provider=2, failure_threshold=3, cooldown_seconds=60.0, clock=time.monotonic):
        self.clients = list(clients)
        self.tries_per_provider = tries_per_provider
        self.failure_threshold = failure_threshold
        self.cooldown_seconds = cooldown_seconds
        self.clock = clock
        self._failures = {client.name: 0 for client in self.clients}
        self._cooling_until = {}

    @classmethod
    def from_config(cls, config):
        return cls(
            clients_from_config(config),
            tries_per_provider=get_int(config, "SMS_TRIES_PER_PROVIDER", 2),
            failure_threshold=get_int(config, "SMS_PROVIDER_FAILURE_THRESHOLD", 3),
            cooldown_seconds=get_float(config, "SMS_PROVIDER_COOLDOWN_SECONDS", 60.0),
        )

    def cooling(self, name):
        until = self._cooling_until.get(name)
        if until is None:
            return False
        if self.clock() >= until:
            del self._cooling_until[name]  # cool-down over: give it another chance
            self._failures[name] = 0
            return False
        return True

    def _cool_down(self, name, reason):
        self._cooling_until[name] = self.clock() + self.cooldown_seconds
        log.warning("sms_provider_cooling_down", provider=name, seconds=self.cooldown_seconds, reason=reason)

    def send(self, message):
        """Deliver ``message`` (id, recipient, body) through the first provider that takes it → ``Outcome``.

        Providers whose slots are all taken are passed over at once; only if
        every usable provider is busy does the message wait (up to each one's
        timeout) for a slot, in preference order.
        """
        errors, busy, cooling = [], [], []
        for client in self.clients:
            if self.cooling(client.name):
                errors.append(f"{client.name}: cooling down")
                cooling.append(client)
                continue
            outcome = self._try(client, message, errors, wait_for_slot=None)
            if outcome == "busy":
                busy.append(client)
            elif outcome is not None:
                return outcome
        if cooling and len(cooling) == len(self.clients):
            # every provider is cooling down: an attempt that calls nobody would only burn the message's
            # attempts, so the one whose cool-down ends first gets a single probe call
            client = min(cooling, key=lambda c: self._cooling_until.get(c.name, 0.0))
            outcome = self._try(client, message, errors, wait_for_slot=client.timeout, tries=1)
            if outcome is not None and outcome != "busy":
                return outcome
        for client in busy:
            outcome = self._try(client, message, errors, wait_for_slot=client.timeout)
            if outcome is not None and outcome != "busy":
                return outcome
        if not self.clients:
            errors.append("no SMS provider configured")
        return Outcome(Status.TEMPORARY_FAILURE, None, None, "; ".join(errors)[:1000])

    def _try(self, client, message, errors, wait_for_slot, tries=None):
        """Up to ``tries_per_provider`` calls to one provider: an ``Outcome``, ``"busy"``, or None (next one)."""
        for _ in range(tries or self.tries_per_provider):
            client.limiter.wait()  # the contractual rate: wait for our turn
            if wait_for_slot is None:
                acquired = client.slots.acquire(blocking=False)
            else:
                acquired = client.slots.acquire(timeout=wait_for_slot)
            if not acquired:
                errors.append(f"{client.name}: busy")
                return "busy"
            try:
                accepted = client.send(message.id, message.recipient, message.body)
            except ProviderError as exc:
                errors.append(str(exc))
                if exc.recipient_rejected:
                    return Outcome(Status.PERMANENT_FAILURE, client.name, None, str(exc))
                if exc.permanent:
                    self._cool_down(client.name, exc.code)
                    return None
                self._failures[client.name] += 1
                if self._failures[client.name] >= self.failure_threshold:
                    self._cool_down(client.name, "repeated temporary errors")
                    return None
                if exc.code == "timeout":  # a hung provider: the next provider now, not a second wait
                    return None
                continue
            finally:
                client.slots.release()
            self._failures[client.name] = 0
            return Outcome(Status.SENT, client.name, accepted.reference)
        return None
