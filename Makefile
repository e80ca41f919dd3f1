# The two set-up commands of the README. Each creates .venv when it is missing.
VENV := .venv
BIN := $(VENV)/bin

$(VENV)/installed: pyproject.toml  ## the suite alone: what running a study needs
	python3 -m venv $(VENV)
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/installed-test: $(VENV)/installed  ## and the test tools (pytest, ruff, Ray, accelerate)
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

.PHONY: run test
run: $(VENV)/installed  ## the quick pooling study afresh, into .reproduce/, compared with the committed one
	$(BIN)/cnn-exp reproduce

test: $(VENV)/installed-test  ## lint, then the tests (no network, no GPU), which include `cnn-exp check`'s
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -n 2  # two workers: the suite's runs are one thread each
