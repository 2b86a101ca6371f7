"""Signed events: the publishing service's HMAC over an event, so a consumer can trust it without asking.

The broker lets more clients publish into a queue than the one service whose
events it holds, so a consumer whose action moves money (dossier on
``payment_succeeded``) must not trust an event for its routing key alone. It
either asks the publisher back (an RPC per event) or checks a signature made
with a key that only the publisher and that consumer hold
(``PAYMENT_EVENT_KEY``, read verbatim from the environment, at least 32 bytes).

The signature is ``v1=`` and the hex HMAC-SHA256 of the event type and the
payload in canonical JSON (sorted keys, no spaces, UTF-8): it survives the
outbox's round trip through PostgreSQL's ``jsonb`` (which reorders keys) and
binds every field, so a captured signature fits no other event. It travels as
the AMQP header ``nameko.event_signature``; Nameko hands it to the consumer's
worker as context data ``event_signature``. Replaying a signed event is
harmless: consumers drop the duplicate ``event_id`` (their inbox).
"""
import functools
import hashlib
import hmac
import json
import os

HEADER = "nameko.event_signature"
CONTEXT_KEY = "event_signature"
VERSION = "v1="
MIN_KEY_BYTES = 32


class SigningKeyError(ValueError):
    """A signing key is set but unusable (too short): start-up stops and names the variable."""


def load_key(variable, environ=None):
    """The key in ``variable`` as bytes, or None when unset or empty."""
    value = (os.environ if environ is None else environ).get(variable, "")
    if not value:
        return None
    key = value.encode("utf-8")
    if len(key) < MIN_KEY_BYTES:
        raise SigningKeyError(f"{variable} has {len(key)} bytes; a signing key needs at least {MIN_KEY_BYTES}")
    return key


def environ_key(variable):
    """``load_key(variable)`` for the hot path: the environment's value is read on each call (a test or an
    operator may change it), the key it gives is kept."""
    return _key_of(variable, os.environ.get(variable, ""))


@functools.lru_cache(maxsize=8)
def _key_of(variable, value):
    return load_key(variable, {variable: value})


def _canonical(event_type, payload):
    return json.dumps([event_type, payload], sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def sign(key, event_type, payload):
    """The signature of one event (``v1=<hex>``)."""
    return VERSION + hmac.new(key, _canonical(event_type, payload), hashlib.sha256).hexdigest()


def verify(key, event_type, payload, signature):
    """True only when ``signature`` is this key's signature of exactly this event."""
    if not key or not isinstance(signature, str) or not signature.startswith(VERSION) or len(signature) > 80:
        return False
    try:
        expected = sign(key, event_type, payload)
    except (TypeError, ValueError):  # a payload JSON cannot carry was never signed
        return False
    return hmac.compare_digest(expected, signature)


def signed_headers(key, event_type, payload):
    """The outbox headers that carry the signature (empty without a key)."""
    return {HEADER: sign(key, event_type, payload)} if key else {}
