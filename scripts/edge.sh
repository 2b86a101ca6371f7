#!/usr/bin/env bash
# Run the public callback edge (infra/nginx/edge.conf.template) with the
# distribution's nginx in front of `make run`'s payment and notify, in the
# foreground: http://127.0.0.1:8080/callbacks/... (Ctrl-C stops it).
# The variables of the template can be overridden from the environment.
set -euo pipefail
cd "$(dirname "$0")/.."
NGINX="${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}"
[ -x "$NGINX" ] || { echo "nginx not found: apt-get install nginx-light" >&2; exit 1; }
work="$PWD/var/edge"
mkdir -p "$work"
export EDGE_LISTEN="${EDGE_LISTEN:-127.0.0.1:8080}"
export PAYMENT_UPSTREAM="${PAYMENT_UPSTREAM:-127.0.0.1:8000}"
export NOTIFY_UPSTREAM="${NOTIFY_UPSTREAM:-127.0.0.1:8001}"
export EDGE_RATE_PER_SECOND="${EDGE_RATE_PER_SECOND:-20}"
export EDGE_BURST="${EDGE_BURST:-40}"
export EDGE_CONNECTIONS_PER_CLIENT="${EDGE_CONNECTIONS_PER_CLIENT:-20}"
# render as the nginx image does: only these ${VARIABLES}, nginx's own $variables untouched
python3 - "$work/edge.conf" <<'PY'
import os, re, sys
names = ("EDGE_LISTEN", "PAYMENT_UPSTREAM", "NOTIFY_UPSTREAM", "EDGE_RATE_PER_SECOND", "EDGE_BURST",
         "EDGE_CONNECTIONS_PER_CLIENT")
text = open("infra/nginx/edge.conf.template").read()
for name in names:
    text = text.replace("${" + name + "}", os.environ[name])
open(sys.argv[1], "w").write(text)
PY
cat > "$work/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $work/nginx.pid;
error_log stderr notice;
events { worker_connections 1024; }
http {
    access_log /dev/stdout;
    client_body_temp_path $work/client_body;
    proxy_temp_path $work/proxy;
    fastcgi_temp_path $work/fastcgi;
    uwsgi_temp_path $work/uwsgi;
    scgi_temp_path $work/scgi;
    include $work/edge.conf;
}
CONF
echo "edge on http://$EDGE_LISTEN -> payment $PAYMENT_UPSTREAM, notify $NOTIFY_UPSTREAM" >&2
exec "$NGINX" -p "$work" -c "$work/nginx.conf"
