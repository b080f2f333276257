# The ops engineer's entry points. Every target that needs tools installs them first (setup is
# idempotent and quick when nothing is missing). Run as root on Debian 12.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PYINFRA := $(VENV)/bin/pyinfra
TESTBED := $(PY) testbed/testbed.py
ENV ?= prod
OUT ?= out/$(ENV)
HOSTS ?=
FLEET ?=

.PHONY: help setup testbed-up testbed-down testbed-status demo test lint render bench \
        prod-audit vault-bootstrap drift status failover releases logs clean

help:
	@echo "make demo            set everything up, deploy to the local testbed, print where to look"
	@echo "make test            set everything up and run the whole test suite"
	@echo "make render ENV=prod OUT=dir   render and validate every artifact of an environment"
	@echo "make prod-audit [APPS=path]  static production audit [+ the Super-App monorepo]"
	@echo "make bench           benchmarks (table + JSON under bench/results/)"
	@echo "make bench FLEET=1   also how deploys grow at 3, 6, 12 hosts (restarts the testbed)"
	@echo "make drift ENV=prod  hosts that differ from their last release (exit 1 if any)"
	@echo "make status ENV=prod the fleet: versions, digests, health, last release"
	@echo "make failover ENV=prod [TO=db-2] [DRY=1]  the database cluster; TO: switch its leader"
	@echo "make logs ENV=prod SERVICE=payments [SINCE=15m] [GREP=text] [RELEASE=id] [FOLLOW=1]"
	@echo "make releases ENV=prod  the release history from every host's ledger [LAST=n]"
	@echo "make testbed-up [HOSTS=n] | testbed-down | testbed-status"
	@echo "make vault-bootstrap [ENV=prod]  policies, AppRoles, missing secrets (VAULT_TOKEN)"

setup:
	@bash testbed/setup-controller.sh

testbed-up: setup
	@$(TESTBED) up $(if $(HOSTS),--hosts $(HOSTS))

testbed-down:
	@if [ -x $(PY) ]; then $(PY) testbed/testbed.py down; else python3 testbed/testbed.py down; fi

testbed-status:
	@$(TESTBED) status

vault-bootstrap: setup
	@$(PY) -m ops.secrets.bootstrap $(if $(filter prod staging,$(ENV)),$(ENV),local)

demo: testbed-up
	@$(PY) -m ops.secrets.bootstrap local
	@echo "demo: deploying the whole bundle to the testbed: pyinfra -y inventories/local.py deploy.py"
	@$(PYINFRA) -y inventories/local.py deploy.py
	@$(PY) testbed/where_to_look.py

lint: setup
	@$(VENV)/bin/ruff check .

test: setup
	@bash tests/run_phases.sh

render: setup
	@$(PY) -m ops.render --env $(ENV) --out $(OUT)

bench: testbed-up
	@$(PY) -m pip install -q -r bench/requirements.txt
	@$(PY) -m ops.secrets.bootstrap local
	@$(PY) -m bench.run $(if $(FLEET),--fleet)

drift: setup
	@$(PYINFRA) inventories/$(ENV).py tasks/drift.py

status: setup
	@$(PYINFRA) inventories/$(ENV).py tasks/status.py

failover: setup
	@$(PYINFRA) inventories/$(ENV).py tasks/failover.py $(if $(TO),--data to=$(TO)) \
		$(if $(DRY),--dry)

logs: setup
	@$(PYINFRA) inventories/$(ENV).py tasks/logs.py --data service=$(SERVICE) \
	  $(if $(SINCE),--data since=$(SINCE)) $(if $(GREP),--data grep=$(GREP)) \
	  $(if $(RELEASE),--data release=$(RELEASE)) $(if $(FOLLOW),--data follow=$(FOLLOW))

releases: setup
	@$(PYINFRA) inventories/$(ENV).py tasks/releases.py $(if $(LAST),--data last=$(LAST))

prod-audit: setup
	@$(PY) -m ops.audit --env prod $(if $(APPS),--apps $(APPS))

clean:
	rm -rf out .pytest_cache
