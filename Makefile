# Two commands set everything up on a fresh machine: `make run MANIFEST=...`
# and `make test`. Each creates the venv and installs what it needs: `run`
# (and `emulator`) the runtime only (`pip install -e .`: the embedded
# emulator is part of it), `test`, `lint`, `bench` and `chaos` the dev extras
# too. One stamp per level, so `make run` then `make test` adds the extras,
# and `make test` then `make run` installs nothing more.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
MANIFEST ?= manifests/example.yaml
ARGS ?=
RUNTIME_STAMP := $(VENV)/.install-runtime
DEV_STAMP := $(VENV)/.install-dev

.PHONY: install install-dev system-deps run test lint bench chaos emulator clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(RUNTIME_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e .
	touch $(RUNTIME_STAMP)

# The dev extras include the runtime: both stamps are then current.
$(DEV_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(RUNTIME_STAMP) $(DEV_STAMP)

install: $(RUNTIME_STAMP)

install-dev: $(DEV_STAMP)

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

run: $(RUNTIME_STAMP)
	$(BIN)/runner run $(MANIFEST) $(ARGS)

test: $(DEV_STAMP)
	$(BIN)/python -m pytest -n 2 -q $(ARGS)

# mypy --strict covers runner/ and benchmarks/ (pyproject's [tool.mypy] files);
# lint-imports checks the import rules of [tool.importlinter].
lint: $(DEV_STAMP)
	$(BIN)/ruff check runner tests benchmarks
	$(BIN)/ruff format --check runner tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: $(DEV_STAMP)
	$(BIN)/python -m benchmarks $(ARGS)

chaos: $(DEV_STAMP)
	$(BIN)/python -m pytest -q -s tests/reliability -m chaos $(ARGS)

emulator: $(RUNTIME_STAMP)
	$(BIN)/runner emulator $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
