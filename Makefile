# Two commands: `make run` starts the backend, `make test` runs the suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PACKAGES := shared services/dossier services/payment services/notify services/portal_sync services/sandbox
STAMP := $(VENV)/.installed

.PHONY: install run demo test test-fast migrate clean bench edge images engine docs

$(STAMP): requirements.txt $(foreach p,$(PACKAGES),$(wildcard $(p)/pyproject.toml))
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	$(BIN)/pip install --quiet --no-deps $(foreach p,$(PACKAGES),$(if $(wildcard $(p)/pyproject.toml),-e $(p)))
	touch $(STAMP)

install: $(STAMP)

## run: start every process of the Procfile (providers without credentials: the local sandbox)
run: install
	VENV=$(VENV) scripts/run.sh

## edge: the public callback edge (nginx, infra/nginx) in front of `make run`, on :8080
edge:
	scripts/edge.sh

## demo: walk one dossier through a VNPay payment against a running `make run`
demo: install
	$(BIN)/python -m sandbox.demo

## test: the whole suite against the real RabbitMQ and PostgreSQL
test: install
	$(BIN)/pytest tests -q -p no:cacheprovider

## bench: the Procfile processes on fresh databases/vhost with the sandbox; one JSON object and a table (bench/README.md)
bench: install
	$(BIN)/python bench/run.py $(BENCH_ARGS)

## migrate: apply every service's migrations (they also run at start-up)
migrate: install
	for s in dossier payment notify portal_sync; do $(BIN)/portal-migrate $$s || exit 1; done

## docs: regenerate docs/asyncapi.yaml and docs/openapi.yaml from the services' schemas
docs: install
	$(BIN)/python scripts/specs.py

## images: one image per Procfile process from the one Dockerfile (a Docker engine: `make engine`)
# service:port; a new service is one more word here.
IMAGE_SERVICES ?= dossier:8002 payment:8000 notify:8001 portal_sync:8003 sandbox:8090
PORTAL_IMAGE_PREFIX ?= portal
PORTAL_IMAGE_TAG ?= latest
PYTHON_IMAGE ?= python:3.11-slim
# Debian's client builds with BuildKit without the buildx plugin.
DOCKER ?= $(firstword $(wildcard /usr/bin/docker) docker)
images:
	@for entry in $(IMAGE_SERVICES); do \
	  service=$${entry%%:*}; port=$${entry##*:}; \
	  echo "building $(PORTAL_IMAGE_PREFIX)/$$service:$(PORTAL_IMAGE_TAG)"; \
	  DOCKER_BUILDKIT=1 $(DOCKER) build --network host --progress plain --quiet \
	    --build-arg SERVICE=$$service --build-arg PORT=$$port --build-arg PYTHON_IMAGE=$(PYTHON_IMAGE) \
	    -t $(PORTAL_IMAGE_PREFIX)/$$service:$(PORTAL_IMAGE_TAG) . >/dev/null || exit 1; \
	done
	@# the previous builds' images, now untagged
	@$(DOCKER) image prune -f --filter label=portal.service >/dev/null

## engine: a Docker engine, Compose v2 and the base images (stand-ins from Debian's packages when no registry answers)
engine:
	scripts/containers/engine.sh
	scripts/containers/stand-ins.sh

clean:
	rm -rf $(VENV) var
