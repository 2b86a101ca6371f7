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
exec "$BIN/honcho" start -f Procfile "$@"
