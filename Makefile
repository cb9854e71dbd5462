# ModelRouter developer commands. `make run` and `make test` work on a fresh machine with
# Redis, NATS (JetStream) and Postgres on their default local ports.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
export PYTHONPATH := $(CURDIR)/libs:$(CURDIR)/libs/protos:$(CURDIR)/services
PROTOS := $(shell find proto -name '*.proto')
GEN_STAMP := libs/protos/.stamp

.PHONY: install proto migrate run up down test test-fast lint bench bench-smoke clean

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[gateway,router,workers,accounting,dev]'
	@# The source roots, so the venv's python imports the services without PYTHONPATH.
	$(PY) -c 'import sysconfig,os; open(os.path.join(sysconfig.get_path("purelib"),"modelrouter-src.pth"),"w").write("\n".join(os.path.abspath(p) for p in ("libs","libs/protos","services",".")))'
	@touch $@

install: $(VENV)/.installed $(GEN_STAMP)

# Generated protobuf/gRPC code lives in libs/protos only; it is built here, never committed.
$(GEN_STAMP): $(PROTOS) $(VENV)/.installed
	rm -rf libs/protos/modelrouter
	mkdir -p libs/protos
	$(PY) -m grpc_tools.protoc -Iproto --python_out=libs/protos --pyi_out=libs/protos \
	  --grpc_python_out=libs/protos $(PROTOS)
	find libs/protos/modelrouter -type d -exec touch {}/__init__.py \;
	@touch $@

proto: $(GEN_STAMP)

migrate: install
	$(PY) -m scripts.preflight postgres
	cd services/accounting && $(CURDIR)/$(PY) -m alembic upgrade head

run: install migrate
	$(PY) -m scripts.stack run

up: install migrate
	$(PY) -m scripts.stack up

down:
	@test -x $(PY) && $(PY) -m scripts.stack down || true

test: install
	$(PY) -m scripts.preflight redis nats postgres
	PY=$(PY) bash bench/setup.sh tools
	$(PY) -m ruff check .
	$(PY) -m mypy libs/common services scripts bench
	$(PY) -m pytest -q

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy libs/common services scripts bench

# The benchmark report (direct vs ModelRouter vs LiteLLM) into bench/results/; see bench/README.md.
bench: install
	$(PY) -m scripts.preflight postgres
	PY=$(PY) bash bench/setup.sh
	$(PY) -m bench.run $(if $(AGAINST),--against $(AGAINST))

bench-smoke: install
	PY=$(PY) bash bench/setup.sh tools
	$(PY) -m pytest -q -m bench tests/bench

clean:
	rm -rf $(VENV) libs/protos/modelrouter $(GEN_STAMP)
