#!/bin/sh
# Renders /etc/nginx/templates/*.template into /etc/nginx/conf.d/ with the
# variables that are set (nginx's own $variables stay as they are), then runs
# the command.
set -eu
defined=$(printf '${%s} ' $(env | cut -d= -f1))
for template in /etc/nginx/templates/*.template; do
  [ -e "$template" ] || continue
  target=/etc/nginx/conf.d/$(basename "$template" .template)
  envsubst "$defined" < "$template" > "$target"
  echo "rendered $template -> $target" >&2
done
exec "$@"
