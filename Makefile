# pharmos — two commands do all setup: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test venv sysdeps lint types pytest bench screenshots clean

$(STAMP): pyproject.toml
	@sh installers/sysdeps.sh
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,gui,train]'
	@touch $(STAMP)

venv: $(STAMP)

# The main job on its embedded default: a local sync server and a terminal on demo data;
# headless (scripted demo day) when there is no display.
demo: venv
	$(BIN)/pharmos demo --data-dir demo-data $(DEMO_ARGS)

lint: venv
	$(BIN)/ruff check .

types: venv
	$(BIN)/mypy

pytest: venv
	QT_QPA_PLATFORM=offscreen $(BIN)/pytest $(PYTEST_ARGS)

test: venv lint types pytest

bench: venv
	$(BIN)/pharmos bench --json

screenshots: venv
	$(BIN)/python -m terminal.screenshots

clean:
	rm -rf $(VENV) demo-data .pytest_cache .mypy_cache .ruff_cache
