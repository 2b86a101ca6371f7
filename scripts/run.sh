#!/usr/bin/env bash
# Start every Procfile process. Providers without real credentials in the
# environment are pointed at the local sandbox (Procfile line `sandbox`) with
# its dummy credentials; real credentials, where set, are left untouched.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${VENV:-.venv}/bin"
export PATH="$PWD/$BIN:$PATH"
eval "$("$BIN/python" -m sandbox.env)"
mkdir -p var
# Explicit dev mode: the sandbox may start, payment accepts the sandbox's published
# secrets, http return URLs are allowed. Never set PORTAL_DEV_MODE in production.
export PORTAL_DEV_MODE=1 SANDBOX=1
if [ -z "${AUTH_JWT_SECRET:-}" ]; then
    # Caller tokens need a key: a random dev key kept in var/ (portal-token --dev and make demo read it).
    if [ ! -s var/dev-auth-secret ]; then
        (umask 077 && "$BIN/python" -c 'import secrets; print(secrets.token_hex(32))' > var/dev-auth-secret)
    fi
    AUTH_JWT_SECRET="$(cat var/dev-auth-secret)"
    export AUTH_JWT_SECRET
    echo "make run: DEV MODE. AUTH_JWT_SECRET is a dev key from var/dev-auth-secret;" \
         "make tokens with: .venv/bin/portal-token --dev --sub <who> --role <role> ..." >&2
fi
if [ -z "${PAYMENT_EVENT_KEY:-}" ]; then
    # payment signs its events for dossier: a random dev key kept in var/, like the token key
    if [ ! -s var/dev-payment-event-key ]; then
        (umask 077 && "$BIN/python" -c 'import secrets; print(secrets.token_hex(32))' > var/dev-payment-event-key)
    fi
    PAYMENT_EVENT_KEY="$(cat var/dev-payment-event-key)"
    export PAYMENT_EVENT_KEY
fi
if ! reason="$("$BIN/python" -m sandbox.guard)"; then
    # real credentials are set: the sandbox (which signs "paid" IPNs for anything) must not run beside them
    echo "make run: not starting the sandbox: $reason" >&2
    exec "$BIN/honcho" start -f Procfile $(awk -F: '/^[a-z_]+:/ && $1 != "sandbox" {print $1}' Procfile)
fi
exec "$BIN/honcho" start -f Procfile "$@"
