# Two commands: `make run` (dashboard on the offline built-ins) and `make test`.
# Each install step is stamped against pyproject.toml, so a second call does not reinstall.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8501

.PHONY: run test bench clean-venv

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.stamp-run: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

# The dev install includes the Ray engine's extra; where Ray has no wheel, its tests are
# skipped with the reason.
$(VENV)/.stamp-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	$(BIN)/python -m pip install --quiet -e ".[dev,ray]" \
		|| echo "note: could not install attnxai[ray]; the Ray engine tests will be skipped" >&2
	touch $@ $(VENV)/.stamp-run

run: $(VENV)/.stamp-run
	$(BIN)/streamlit run dashboard/app.py --server.port $(PORT) --server.address 127.0.0.1

test: $(VENV)/.stamp-dev
	$(BIN)/lint-imports
	$(BIN)/python -m pytest

bench: $(VENV)/.stamp-run
	$(BIN)/attnxai bench capture

clean-venv:
	rm -rf $(VENV)
