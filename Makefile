# Two commands set everything up on a fresh machine: `make run MANIFEST=...`
# and `make test`. Each creates the venv and installs what it needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
MANIFEST ?= manifests/example.yaml
ARGS ?=
STAMP := $(VENV)/.install-stamp

.PHONY: install system-deps run test lint bench chaos emulator clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# Debian packages the tests use as real servers: Chromium for the gallery's
# browser test, redis-server for the coordinator's. Installed only when missing.
system-deps:
	@missing=""; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v redis-server >/dev/null 2>&1 || missing="$$missing redis-server"; \
	if [ -n "$$missing" ]; then \
		sudo=""; [ "$$(id -u)" = 0 ] || sudo=sudo; \
		echo "installing Debian packages:$$missing"; \
		$$sudo apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends $$missing; \
	fi

run: $(STAMP)
	$(BIN)/runner run $(MANIFEST) $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 -q $(ARGS)

# mypy --strict covers runner/ and benchmarks/ (pyproject's [tool.mypy] files);
# lint-imports checks the import rules of [tool.importlinter].
lint: $(STAMP)
	$(BIN)/ruff check runner tests benchmarks
	$(BIN)/ruff format --check runner tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: $(STAMP)
	$(BIN)/python -m benchmarks $(ARGS)

chaos: $(STAMP)
	$(BIN)/python -m pytest -q -s tests/reliability -m chaos $(ARGS)

emulator: $(STAMP)
	$(BIN)/runner emulator $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
