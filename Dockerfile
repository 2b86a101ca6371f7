# One image recipe for every process of the Procfile. Build context: the
# repository root.
#   docker build --build-arg SERVICE=payment --build-arg PORT=8000 -t portal/payment .
#   make images                       # all of them (list: IMAGE_SERVICES in the Makefile)
# No "syntax" directive: BuildKit's built-in frontend has everything used here,
# so a build needs no image from a registry but the base.
#
# PYTHON_IMAGE: python:3.11-slim, or the stand-in scripts/containers/stand-ins.sh
# makes from Debian's packages when no registry is reachable.
ARG PYTHON_IMAGE=python:3.11-slim

# --- build: wheels for the pinned requirements, portal_shared and the service ---
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY requirements.txt ./
# The "# tests" and "# infra validation" sections of requirements.txt are for CI
# only; the runtime installs what its service needs from the rest (the sandbox
# also takes aiosmtpd from the wheels).
RUN awk '/^#/ { skip = ($0 ~ /^# *(tests|infra validation)/) } !skip' requirements.txt > runtime-requirements.txt
# Third-party wheels first, in a layer of their own that every service's image
# shares (SERVICE is declared after it): it changes only with requirements.txt.
RUN --mount=type=cache,target=/root/.cache/pip \
    pip wheel --wheel-dir /wheels/third-party -r requirements.txt
ARG SERVICE
RUN test -n "$SERVICE" || { echo "build with --build-arg SERVICE=<a directory of services/>" >&2; exit 64; }
COPY shared/ shared/
COPY services/ services/
# The project's packages (a service may depend on another: portal_sync on dossier).
# package-name: the service's pip name, read from its pyproject.toml.
RUN --mount=type=cache,target=/root/.cache/pip \
    pip wheel --no-deps --wheel-dir /wheels/project ./shared services/*/ \
    && sed -n 's/^name *= *"\(.*\)"/\1/p' services/${SERVICE}/pyproject.toml | head -n1 > package-name \
    && test -s package-name \
    && mkdir -p /app/services/${SERVICE} \
    && if [ -f services/${SERVICE}/config.yml ]; then cp services/${SERVICE}/config.yml /app/services/${SERVICE}/; fi

# --- runtime: no compilers, no sources, a non-root user ---
FROM ${PYTHON_IMAGE}
ARG SERVICE
ARG PORT
LABEL portal.service=${SERVICE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PORTAL_SERVICE=${SERVICE} \
    PORTAL_HTTP_PORT=${PORT}
RUN groupadd --system --gid 10001 portal \
    && useradd --system --uid 10001 --gid portal --home-dir /app --shell /usr/sbin/nologin portal
WORKDIR /app
# Third-party packages first: this layer does not change when only the code does.
RUN --mount=type=bind,from=build,source=/wheels/third-party,target=/wheels/third-party \
    --mount=type=bind,from=build,source=/src/runtime-requirements.txt,target=/tmp/runtime-requirements.txt \
    pip install --no-index --find-links /wheels/third-party -r /tmp/runtime-requirements.txt
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    --mount=type=bind,from=build,source=/src/package-name,target=/tmp/package-name \
    pip install --no-index --find-links /wheels/third-party --find-links /wheels/project \
        portal-shared "$(cat /tmp/package-name)"
COPY --from=build /app/ /app/
COPY Procfile ./
# var/ holds the embedded SQLite default; PostgreSQL is used whenever <SERVICE>_DATABASE_URL is set.
RUN mkdir -p var && chown portal:portal var
USER 10001:10001
EXPOSE ${PORT}
# python:slim has no curl: probe /healthz with the standard library, on the port
# of <SERVICE>_HTTP_ADDRESS (the image's default port when unset).
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; s = os.environ['PORTAL_SERVICE'].upper(); port = os.environ.get(s + '_HTTP_ADDRESS', ':' + os.environ['PORTAL_HTTP_PORT']).rsplit(':', 1)[1]; urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=4)"]
# The service's Procfile line, as `make run` starts it; exec: the process gets
# SIGTERM itself and Nameko finishes its in-flight workers before it exits.
CMD ["/bin/sh", "-c", "line=$(sed -n \"s/^${PORTAL_SERVICE}: //p\" Procfile); [ -n \"$line\" ] || { echo \"no Procfile line for $PORTAL_SERVICE\" >&2; exit 64; }; exec $line"]
