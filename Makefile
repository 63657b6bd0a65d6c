# Two entry points for newcomers: `make demo` and `make test`. Both build .venv themselves.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_OUT ?= demo-run

.PHONY: install demo test test-fast clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev,workflows]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/slidepredict demo --out $(DEMO_OUT)

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache
