# The two commands that matter: `make run` and `make test`. Everything else is a helper.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.13 || command -v python3.12 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
SITE_PORT ?= 8000
IDP_PORT ?= 8001
IDP_ENV := DJANGO_SETTINGS_MODULE=idp.settings IDP_ISSUER=http://127.0.0.1:$(IDP_PORT)/o

.PHONY: run test venv node-op idp idp-setup migrate lint fmt bench load messages clean

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else "Python 3.12+ is required")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $@

venv: $(VENV)/.installed

migrate: venv
	DJANGO_DEBUG=$${DJANGO_DEBUG:-true} $(PY) manage.py migrate --noinput
	$(IDP_ENV) $(PY) manage.py migrate --noinput

idp-setup: migrate
	$(IDP_ENV) $(PY) manage.py idp_setup --output .run/demo-client.json \
		--redirect-uri http://127.0.0.1:$(SITE_PORT)/oauth/callback/ \
		--redirect-uri http://localhost:$(SITE_PORT)/oauth/callback/ \
		--post-logout-redirect-uri http://127.0.0.1:$(SITE_PORT)/ \
		--post-logout-redirect-uri http://localhost:$(SITE_PORT)/

# Site and embedded provider side by side; Ctrl-C stops both.
run: idp-setup
	@bash scripts/run.sh $(SITE_PORT) $(IDP_PORT)

# The embedded development provider alone.
idp: idp-setup
	$(IDP_ENV) $(PY) manage.py runserver 127.0.0.1:$(IDP_PORT)

# node oidc-provider, the suite's independent provider (tests/op, pinned by its lockfile): installed again when
# node_modules is missing or older than the lockfile. Without npm its tests skip (tests/node_provider.py).
OP_DIR := tests/op
$(OP_DIR)/node_modules/.installed: $(OP_DIR)/package.json $(OP_DIR)/package-lock.json
	@if command -v npm >/dev/null; then \
		npm ci --prefix $(OP_DIR) --no-audit --no-fund && touch $@; \
	else \
		echo "npm not found: the tests against node oidc-provider will be skipped (install nodejs and npm)"; \
	fi

node-op: $(OP_DIR)/node_modules/.installed

test: venv node-op
	$(PY) -m pytest $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy .

# Translations (docs/i18n.md): bring every catalogue in step with the code (makemessages: needs GNU gettext),
# then compile the .mo files (pure Python). Translate the new entries in the fr_CA .po files and run it again.
messages: venv
	$(PY) scripts/i18n.py extract
	$(PY) scripts/i18n.py compile
	-$(PY) scripts/i18n.py check

fmt: venv
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# Benchmarks (printed figures, not tests; PostgreSQL via DATABASE_URL, default oauthsite_bench): docs/benchmarks.md.
bench: venv
	$(PY) bench/run.py $(BENCH_ARGS)

# 200 simulated users for 2 minutes against gunicorn ×4 and 10-second tokens (LOAD_ARGS="--users 20 ...").
load: venv
	$(PY) bench/load.py $(LOAD_ARGS)

clean:
	rm -rf $(VENV) .run db.sqlite3 idp.sqlite3 $(OP_DIR)/node_modules
