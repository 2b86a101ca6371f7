# Two commands: `make run` starts the backend, `make test` runs the suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PACKAGES := shared services/dossier services/payment services/notify services/portal_sync services/sandbox
STAMP := $(VENV)/.installed

.PHONY: install run demo test test-fast migrate clean bench edge

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

clean:
	rm -rf $(VENV) var
